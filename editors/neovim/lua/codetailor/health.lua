--- `:checkhealth codetailor`.
local config = require("codetailor.config")
local server = require("codetailor.server")

local M = {}

function M.check()
  local health = vim.health
  health.start("codetailor: Neovim")
  if vim.fn.has("nvim-0.10") ~= 1 then
    health.error("Neovim 0.10 or newer is needed")
    return
  end
  local mode = require("codetailor").ghost_mode()
  health.ok(("Neovim %s; ghost text: %s"):format(tostring(vim.version()),
    mode == "native" and "vim.lsp.inline_completion (native)" or "extmarks (the plugin's own)"))
  if not require("codetailor").did_setup then
    health.warn("setup() has not been called", { 'Add require("codetailor").setup({}) to your config' })
  end

  health.start("codetailor: server command")
  local cmd = config.options.cmd
  if vim.fn.executable(cmd[1]) ~= 1 then
    health.error(("%q is not an executable"):format(cmd[1]), {
      "Install the server (`make install` in the Codetailor repository)",
      'or set cmd = { "/path/to/.venv/bin/codetailor", "serve" } in setup()',
    })
  else
    local version_cmd = vim.list_extend(config.cli_prefix(cmd), { "--version" })
    local ok, result = pcall(function()
      return vim.system(version_cmd, { text = true }):wait(15000)
    end)
    if ok and result.code == 0 then
      health.ok(("%s: %s"):format(table.concat(cmd, " "), vim.trim(result.stdout or "")))
    else
      health.error(("`%s` failed: %s"):format(table.concat(version_cmd, " "),
        ok and vim.trim(result.stderr or "") or tostring(result)))
    end
  end

  health.start("codetailor: server")
  local client = server.client()
  if not client then
    if server.state.error then
      health.error(server.state.error, { ":Codetailor log shows its output; :Codetailor restart" })
    else
      health.info("not running (it starts with a buffer of one of: " .. table.concat(config.options.filetypes, ", ") .. ")")
    end
    return
  end
  health.ok(("running (client %d), attached to %d buffer(s)"):format(client.id, vim.tbl_count(client.attached_buffers)))
  local caps = client.server_capabilities or {}
  if caps.inlineCompletionProvider then
    health.ok("the server offers textDocument/inlineCompletion")
  else
    health.error("the server does not offer textDocument/inlineCompletion: is it an older codetailor?")
  end
  local status, err = server.status_sync(3000)
  if not status then
    health.warn("codetailor.status: " .. tostring(err))
  elseif status.state == "failed" then
    health.error("the model failed to load: " .. tostring(status.error))
  else
    for _, line in ipairs(require("codetailor.commands").format_status(status)) do
      health.info(line)
    end
  end
end

return M
