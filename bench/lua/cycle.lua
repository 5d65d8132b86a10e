-- Book + checkout cycle: thread i (one connection each) is driver i of
-- BENCH_DRIVERS ("token vehicle_id spot_id" per line). It books its own spot,
-- checks the ticket out, and again, for the whole run.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done
local count = common.count

function init(args)
  counts = {}
  local line = common.lines(os.getenv("BENCH_DRIVERS"))[tid]
  local token
  token, vehicle, spot = line:match("^(%S+) (%d+) (%d+)")
  headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  booking = '{"vehicle_id": ' .. vehicle .. ', "parking_spot_id": ' .. spot .. "}"
  ticket, pending, calls = nil, nil, 0
end

function request()
  -- wrk calls request() once more in thread 1 to check the script; that one
  -- is never sent. Otherwise a request without a response was lost (a socket
  -- error) and the driver's state is unknown.
  calls = calls + 1
  if pending and not (tid == 1 and calls == 2) then
    count("lost_" .. pending)
  end
  if ticket then
    pending = "checkout"
    return wrk.format("PATCH", "/api/checkout/" .. ticket, headers)
  end
  pending = "book"
  return wrk.format("POST", "/api/tickets", headers, booking)
end

function response(status, _, body)
  local action = pending
  pending = nil
  if action == "book" and status == 201 then
    ticket = body:match('"ticket_id":%s*(%d+)')
    count("booked")
  elseif action == "checkout" and status == 200 then
    ticket = nil
    count("checked_out")
  else
    ticket = nil
    count((action or "unknown") .. "_" .. status)
  end
end
