-- wrk script: every request carries the next bearer token from a file (one JWT per line).
-- Usage: wrk ... -s rotate-tokens.lua URL -- /path/to/tokens.txt
-- wrk runs setup() in the main Lua state and init()/request() in one Lua state per thread,
-- so each thread loads the file itself and starts at a different offset.

local next_thread_id = 0
local tokens = {}
local index = 0

function setup(thread)
    thread:set("thread_id", next_thread_id)
    next_thread_id = next_thread_id + 1
end

function init(args)
    local path = args[1]
    if path == nil then
        error("rotate-tokens.lua needs the token file path after --")
    end
    for line in io.lines(path) do
        if #line > 0 then
            tokens[#tokens + 1] = line
        end
    end
    if #tokens == 0 then
        error("no tokens in " .. path)
    end
    index = ((thread_id or 0) * 7919) % #tokens
end

function request()
    index = index % #tokens + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[index]
    return wrk.format()
end
