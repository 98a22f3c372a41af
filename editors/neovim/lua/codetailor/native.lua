--- Ghost text with Neovim's own `vim.lsp.inline_completion` (0.12+): this module
--- only turns it on for the server's buffers and gives the keys their actions.
local server = require("codetailor.server")
local util = require("codetailor.util")

local M = {}

--- Whether this Neovim has native inline completion.
function M.available()
  local ok, ic = pcall(require, "vim.lsp.inline_completion")
  return ok and type(ic) == "table" and type(ic.get) == "function" and type(ic.enable) == "function"
end

---@param buf integer
function M.attach(buf)
  vim.lsp.inline_completion.enable(true, { bufnr = buf })
end

---@param buf integer
---@param enable boolean
function M.set_enabled(buf, enable)
  vim.lsp.inline_completion.enable(enable, { bufnr = buf })
end

--- Accept the shown completion (Neovim inserts it and runs `codetailor.accepted`).
---@param buf integer
function M.accept(buf)
  return vim.lsp.inline_completion.get({ bufnr = buf })
end

--- Insert the completion's next line; the server serves the rest from its cache.
---@param buf integer
function M.accept_line(buf)
  return vim.lsp.inline_completion.get({
    bufnr = buf,
    on_accept = function(item)
      local text = type(item.insert_text) == "string" and item.insert_text or item.insert_text.value
      local line, rest = util.next_line(text)
      local row, col = util.cursor()
      if item.range then -- the item replaces from its range's start: drop what is already typed
        local typed = vim.api.nvim_buf_get_text(buf, item.range.start.row, item.range.start.col, row, col, {})
        local prefix = table.concat(typed, "\n")
        if line:sub(1, #prefix) == prefix then
          line = line:sub(#prefix + 1)
        end
      end
      util.insert(buf, row, col, line)
      if rest == "" then
        server.execute(item.client_id, item.command)
      end
    end,
  })
end

--- Hide the completion.
---@param buf integer
function M.dismiss(buf)
  return vim.lsp.inline_completion.get({ bufnr = buf, on_accept = function() end })
end

--- Show the next candidate.
---@param buf integer
function M.next(buf)
  vim.lsp.inline_completion.select({ bufnr = buf, count = 1 })
  return true
end

return M
