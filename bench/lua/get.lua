-- GET scenarios: BENCH_PATH (with "{lot}" replaced by a random lot id per
-- request), optional bearer token BENCH_TOKEN.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local path = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN") or ""
local lots = tonumber(os.getenv("BENCH_LOTS") or "100")

wrk.method = "GET"
wrk.path = path
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

if path:find("{lot}", 1, true) then
  local head, tail = path:match("^(.-){lot}(.*)$")
  function init(args)
    math.randomseed(tid * 7919 + os.time())
  end
  function request()
    return wrk.format(nil, head .. math.random(1, lots) .. tail)
  end
end
