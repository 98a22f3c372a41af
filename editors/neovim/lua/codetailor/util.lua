--- Small helpers shared by the modules: calls that differ across Neovim versions,
--- and inserting text at the cursor.
local M = {}

M.has_011 = vim.fn.has("nvim-0.11") == 1

--- `client:method(...)` on Neovim 0.11+, `client.method(...)` on 0.10.
---@param client vim.lsp.Client
---@param method string "request", "notify", "cancel_request", "request_sync", "stop"
function M.call(client, method, ...)
  if M.has_011 then
    return client[method](client, ...)
  end
  return client[method](...)
end

--- Insert `text` (which may hold newlines) at (row, col) in `buf`, 0-based, and
--- put the window's cursor after it.
---@param buf integer
---@param row integer
---@param col integer byte column
---@param text string
function M.insert(buf, row, col, text)
  local lines = vim.split(text, "\n", { plain = true })
  vim.api.nvim_buf_set_text(buf, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  local win = vim.fn.bufwinid(buf)
  if win ~= -1 then
    vim.api.nvim_win_set_cursor(win, { end_row + 1, end_col })
  end
end

--- The next line of a completion: up to the first newline, or, when the text
--- starts with a newline, that newline and the line after it.
---@param text string
---@return string line, string rest
function M.next_line(text)
  local line = text:match("^\n?[^\n]*")
  return line, text:sub(#line + 1)
end

--- The cursor as 0-based (row, byte col) for `win`.
---@param win? integer
---@return integer row, integer col
function M.cursor(win)
  local pos = vim.api.nvim_win_get_cursor(win or 0)
  return pos[1] - 1, pos[2]
end

--- Report a problem to the user, once per distinct message.
local reported = {}
---@param message string
---@param level? integer vim.log.levels.*
function M.notify_once(message, level)
  if reported[message] then
    return
  end
  reported[message] = true
  vim.notify("codetailor: " .. message, level or vim.log.levels.WARN)
end

--- Drop a buffer's pending request: a newer `generation` makes late answers stale, the
--- debounce timer stops and the in-flight LSP request is cancelled. `s` is the buffer's
--- state ({ generation, timer?, request? = { client_id, id } }), for ghost text and next edits.
---@param s table
function M.cancel_pending(s)
  s.generation = s.generation + 1
  if s.timer then
    s.timer:stop()
    if not s.timer:is_closing() then
      s.timer:close()
    end
    s.timer = nil
  end
  if s.request then
    local client = vim.lsp.get_client_by_id(s.request.client_id)
    if client then
      M.call(client, "cancel_request", s.request.id)
    end
    s.request = nil
  end
end

return M
