--- The language server: one `codetailor serve` process for the whole editor,
--- started with `vim.lsp.start` for the configured filetypes. Reports a crash
--- to the user, tracks model-loading `$/progress`, and asks for the status.
local config = require("codetailor.config")
local util = require("codetailor.util")

local M = {}

M.NAME = "codetailor"

---@class codetailor.ServerState
---@field stopping table<integer, boolean> Clients we stopped on purpose (no crash report).
---@field progress? { kind: string, title?: string, message?: string, percentage?: integer }
---@field error? string Why the last server exited, if it crashed.
M.state = { stopping = {}, progress = nil, error = nil }

--- The running client, if any.
---@return vim.lsp.Client?
function M.client()
  return vim.lsp.get_clients({ name = M.NAME })[1]
end

---@param buf integer
---@return string
local function root_dir(buf)
  return vim.fs.root(buf, config.options.root_markers) or vim.fn.getcwd()
end

---@param code integer
---@param signal integer
---@param client_id integer
local function on_exit(code, signal, client_id)
  local intended = M.state.stopping[client_id]
  M.state.stopping[client_id] = nil
  M.state.progress = nil
  if intended then
    return
  end
  local how = signal ~= 0 and ("was killed by signal %d"):format(signal)
    or ("exited with status %d"):format(code)
  M.state.error = ("the server %s"):format(how)
  vim.schedule(function()
    vim.notify(
      ("codetailor: the server %s. Its log: :Codetailor log. Start it again: :Codetailor restart."):format(how),
      vim.log.levels.ERROR
    )
  end)
end

--- Start the server for `buf` (or attach `buf` to the running one).
---@param buf integer
---@return integer? client_id
function M.start(buf)
  local opts = config.options
  if vim.fn.executable(opts.cmd[1]) ~= 1 then
    util.notify_once(
      ("cannot start the server: %q is not an executable (set `cmd` in require('codetailor').setup())"):format(opts.cmd[1]),
      vim.log.levels.ERROR
    )
    return nil
  end
  M.state.error = nil
  return vim.lsp.start({
    name = M.NAME,
    cmd = opts.cmd,
    root_dir = root_dir(buf),
    init_options = config.init_options(opts),
    on_exit = on_exit,
    -- One server (one model in memory) for every project and buffer.
    reuse_client = function(client, conf)
      return client.name == conf.name
    end,
  }, { bufnr = buf })
end

--- Stop the server on purpose (no crash report).
function M.stop()
  for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
    M.state.stopping[client.id] = true
    util.call(client, "stop")
  end
end

--- Whether `buf` is one the server should serve.
---@param buf integer
function M.wants(buf)
  if vim.bo[buf].buftype ~= "" then
    return false
  end
  local fts = config.options.filetypes
  return vim.tbl_contains(fts, "*") and vim.bo[buf].filetype ~= ""
    or vim.tbl_contains(fts, vim.bo[buf].filetype)
end

--- Stop, then start again for every buffer it should serve.
function M.restart()
  M.stop()
  local function start_all()
    if M.client() then -- still shutting down
      return vim.defer_fn(start_all, 50)
    end
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and M.wants(buf) then
        M.start(buf)
      end
    end
  end
  start_all()
end

--- Send the current settings (after `:Codetailor toggle`, a new adapter...).
function M.send_settings()
  local client = M.client()
  if client then
    util.call(client, "notify", "workspace/didChangeConfiguration", {
      settings = config.to_wire(config.options.settings),
    })
  end
end

--- Ask the server for `codetailor.status`; `callback(err, status)`.
---@param callback fun(err?: string, status?: table)
function M.status(callback)
  local client = M.client()
  if not client then
    return callback(M.state.error or "the server is not running")
  end
  util.call(client, "request", "workspace/executeCommand", { command = "codetailor.status", arguments = {} },
    function(err, result)
      callback(err and (err.message or vim.inspect(err)) or nil, result)
    end)
end

--- `codetailor.status`, waiting at most `timeout_ms`.
---@param timeout_ms? integer
---@return table? status, string? err
function M.status_sync(timeout_ms)
  local done, status, error
  M.status(function(err, result)
    done, status, error = true, result, err
  end)
  vim.wait(timeout_ms or 5000, function()
    return done
  end, 10)
  if not done then
    return nil, "no answer from the server"
  end
  return status, error
end

--- Execute a completion item's command (`codetailor.accepted`) on the server.
---@param client_id integer
---@param command? lsp.Command
function M.execute(client_id, command)
  local client = vim.lsp.get_client_by_id(client_id)
  if client and command then
    util.call(client, "request", "workspace/executeCommand", {
      command = command.command,
      arguments = command.arguments,
    }, function(err)
      if err then
        util.notify_once(("%s failed: %s"):format(command.command, err.message or vim.inspect(err)))
      end
    end)
  end
end

--- Keep the latest `$/progress` (model loading) for the statusline.
---@param ev { data: { client_id: integer, params: { value: table } } }
function M.on_progress(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if not client or client.name ~= M.NAME then
    return
  end
  local value = ev.data.params.value or {}
  M.state.progress = {
    kind = value.kind,
    title = value.title or (M.state.progress and M.state.progress.title),
    message = value.message,
    percentage = value.percentage,
  }
end

--- One short line for a statusline: loading progress, ready, off or an error.
---@return string
function M.statusline()
  if M.state.error then
    return "codetailor: error"
  end
  if not M.client() then
    return ""
  end
  if not config.options.settings.enable then
    return "codetailor: off"
  end
  local p = M.state.progress
  if p and p.kind ~= "end" then
    return ("codetailor: %s%s"):format(p.message or "loading", p.percentage and (" %d%%"):format(p.percentage) or "")
  end
  return "codetailor"
end

return M
