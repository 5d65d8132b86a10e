-- Arrival storm: far more drivers than free spots arrive at one lot
-- (BENCH_LOT) and ask to be assigned any spot. Thread t (one connection each)
-- plays every BENCH_THREADS-th driver of BENCH_DRIVERS ("token vehicle_id").
-- In turn, a driver without a ticket asks for a spot; one who got a spot
-- stays BENCH_HOLD turns, then checks out and queues again. Outcomes:
-- "booked" (201), "refused" (409 "No spots available"), "checked_out" (200);
-- anything else is counted under its action and status, and is an error.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done
local count = common.count

function init(args)
  counts = {}
  drivers = {}
  local every = tonumber(os.getenv("BENCH_THREADS"))
  for i, line in ipairs(common.lines(os.getenv("BENCH_DRIVERS"))) do
    if (i - 1) % every == tid - 1 then
      local token, vehicle = line:match("^(%S+) (%d+)")
      table.insert(drivers, {
        headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
        arrival = '{"vehicle_id": ' .. vehicle .. ', "lot_id": ' .. os.getenv("BENCH_LOT") .. "}",
        ticket = nil,
        wait = 0,
      })
    end
  end
  hold = tonumber(os.getenv("BENCH_HOLD") or "2")
  cursor, current, pending, calls = 0, nil, nil, 0
end

function request()
  -- wrk calls request() once more in thread 1 to check the script; that one
  -- is never sent. Otherwise a request without a response was lost (a socket
  -- error) and the driver's state is unknown.
  calls = calls + 1
  if pending and not (tid == 1 and calls == 2) then
    count("lost_" .. pending)
  end
  -- Bounded: after (hold + 1) rounds some parked driver's wait has run out.
  for _ = 1, #drivers * (hold + 1) + 1 do
    cursor = cursor % #drivers + 1
    local d = drivers[cursor]
    if d.ticket == nil then
      current, pending = d, "book"
      return wrk.format("POST", "/api/tickets", d.headers, d.arrival)
    elseif d.wait <= 0 then
      current, pending = d, "checkout"
      return wrk.format("PATCH", "/api/checkout/" .. d.ticket, d.headers)
    end
    d.wait = d.wait - 1
  end
end

function response(status, _, body)
  local d, action = current, pending
  pending = nil
  if action == "book" then
    if status == 201 then
      d.ticket = body:match('"ticket_id":%s*(%d+)')
      d.wait = hold
      count("booked")
    elseif status == 409 and body:find("No spots available", 1, true) then
      count("refused")
    else
      count("book_" .. status)
    end
  elseif action == "checkout" then
    d.ticket = nil
    count(status == 200 and "checked_out" or "checkout_" .. status)
  end
end
