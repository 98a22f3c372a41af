--- Codetailor for Neovim: inline completions from a local `codetailor serve`.
---
--- ```lua
--- require("codetailor").setup({ cmd = { "/path/to/.venv/bin/codetailor", "serve" } })
--- ```
--- `setup()` may be called again (e.g. when reloading a config): it replaces the
--- options, autocommands and keymaps instead of adding more.
local config = require("codetailor.config")
local server = require("codetailor.server")

local M = {}

M.did_setup = false

--- "native" or "fallback": how ghost text is shown in this Neovim with these options.
function M.ghost_mode()
  local want = config.options.ghost_text
  if want == "fallback" then
    return "fallback"
  end
  local native = require("codetailor.native").available()
  if want == "native" and not native then
    require("codetailor.util").notify_once("ghost_text = 'native' needs Neovim 0.12+; using the fallback")
  end
  return native and "native" or "fallback"
end

--- The module that shows ghost text and handles its keys.
function M.ghost()
  return require(M.ghost_mode() == "native" and "codetailor.native" or "codetailor.ghost")
end

local DESCRIPTIONS = {
  accept = "Codetailor: accept the completion",
  accept_line = "Codetailor: accept the completion's next line",
  dismiss = "Codetailor: dismiss the completion",
  next = "Codetailor: next completion",
  next_edit = "Codetailor: jump to the next edit, then apply it",
}

--- What a key does to the completion: true when it acted, false when there is none.
--- Runs inside an <expr> mapping, where text cannot change, so edits happen right
--- after it (native `get()` schedules its own).
---@param buf integer
---@param action string
---@return boolean
local function completion_action(buf, action)
  if M.ghost_mode() == "native" then
    local native = require("codetailor.native")
    if action == "next" then
      vim.schedule(function()
        native.next(buf)
      end)
      return true
    end
    return native[action](buf) and true or false
  end
  local ghost = require("codetailor.ghost")
  if action ~= "next" and not ghost.visible(buf) then
    if action == "dismiss" then
      vim.schedule(function()
        ghost.dismiss(buf) -- a pending request, if any
      end)
    end
    return false
  end
  vim.schedule(function()
    ghost[action](buf)
  end)
  return true
end

--- What a key does to a shown next edit: true when it acted.
---@param buf integer
---@param action string
---@return boolean
local function next_edit_action(buf, action)
  local next_edit = require("codetailor.next_edit")
  if (action ~= "next_edit" and action ~= "dismiss") or not next_edit.visible(buf) then
    return false
  end
  vim.schedule(function()
    if action == "dismiss" then
      next_edit.dismiss(buf)
    else
      next_edit.tab(buf)
    end
  end)
  return true
end

--- What a key does: the first of `actions` that acts (the completion before a
--- next edit), or `lhs` (its usual job) when none does.
---@param buf integer
---@param mode string "i" or "n"
---@param actions string[]
---@param lhs string
---@return string keys
local function key_action(buf, mode, actions, lhs)
  for _, action in ipairs(actions) do
    if mode == "i" and action ~= "next_edit" and completion_action(buf, action) then
      return ""
    end
    if next_edit_action(buf, action) then
      return ""
    end
  end
  return lhs
end

--- The keys mapped in each buffer, as { mode, lhs }, so a second setup() can take them back.
---@type table<integer, string[][]>
local mapped = {}

--- The actions of each key in `mode`, in order: one key may do several jobs (<Tab>
--- accepts a completion, else jumps to or applies a next edit).
---@param mode string
---@return table<string, string[]> actions by lhs, string[] lhs in order
local function keys_of(mode)
  local by_key, order = {}, {}
  local actions = mode == "i" and { "accept", "accept_line", "dismiss", "next", "next_edit" } or { "next_edit" }
  for _, action in ipairs(actions) do
    local lhs = config.options.keymaps[action]
    if lhs then
      if not by_key[lhs] then
        by_key[lhs], order[#order + 1] = {}, lhs
      end
      table.insert(by_key[lhs], action)
    end
  end
  return by_key, order
end

--- Insert-mode keys (and the next-edit key in Normal mode) in `buf`.
---@param buf integer
local function map_keys(buf)
  for _, key in ipairs(mapped[buf] or {}) do
    pcall(vim.keymap.del, key[1], key[2], { buffer = buf })
  end
  mapped[buf] = {}
  for _, mode in ipairs({ "i", "n" }) do
    local by_key, order = keys_of(mode)
    for _, lhs in ipairs(order) do
      local actions = by_key[lhs]
      vim.keymap.set(mode, lhs, function()
        return key_action(buf, mode, actions, lhs)
      end, { buffer = buf, expr = true, desc = DESCRIPTIONS[actions[1]] })
      table.insert(mapped[buf], { mode, lhs })
    end
  end
end

--- The server attached to `buf`: show ghost text there and map the keys.
---@param buf integer
local function on_attach(buf)
  M.ghost().attach(buf)
  require("codetailor.next_edit").attach(buf)
  require("codetailor.cursor").attach(buf)
  if M.ghost_mode() == "native" and not config.options.settings.enable then
    require("codetailor.native").set_enabled(buf, false)
  end
  map_keys(buf)
end

--- Configure and start. Safe to call more than once.
---@param opts? codetailor.Config|table
function M.setup(opts)
  local refused = {}
  if config.from_project() then -- a repository's .nvim.lua may not pick the engine or model
    opts, refused = config.keep_machine(opts or {}, config.options)
  end
  local resolved, problems = config.resolve(opts)
  if #refused > 0 then
    table.insert(problems, "a project's config may not set " .. table.concat(refused, ", ")
      .. " (set them in your own config); kept as they were")
  end
  config.options = resolved
  if #problems > 0 then
    vim.notify("codetailor: setup(): " .. table.concat(problems, "; "), vim.log.levels.WARN)
  end
  vim.api.nvim_set_hl(0, require("codetailor.ghost").hl, { link = "Comment", default = true })
  require("codetailor.next_edit").define_highlights()

  local group = vim.api.nvim_create_augroup("codetailor", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    callback = function(ev)
      if server.wants(ev.buf) then
        server.start(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == server.NAME then
        on_attach(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd("LspProgress", { group = group, callback = server.on_progress })
  require("codetailor.commands").create()

  if M.did_setup then
    -- Options may have changed: give the running server the new settings, and
    -- re-map keys in the buffers it serves.
    server.send_settings()
    local client = server.client()
    for buf in pairs(client and client.attached_buffers or {}) do
      on_attach(buf)
    end
  end
  M.did_setup = true
  -- Buffers opened before setup() (e.g. the file on the command line).
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and server.wants(buf) then
      server.start(buf)
    end
  end
end

--- Turn completions on or off (`enable` given) or flip them.
---@param enable? boolean
function M.toggle(enable)
  local settings = config.options.settings
  if enable == nil then
    enable = not settings.enable
  end
  settings.enable = enable
  server.send_settings()
  local client = server.client()
  for buf in pairs(client and client.attached_buffers or {}) do
    if M.ghost_mode() == "native" then
      require("codetailor.native").set_enabled(buf, enable)
    else
      require("codetailor.ghost").clear(buf)
    end
    require("codetailor.next_edit").clear(buf)
  end
  vim.notify("codetailor: completions " .. (enable and "on" or "off"), vim.log.levels.INFO)
end

--- For a statusline: "codetailor: loading 40%", "codetailor", "codetailor: off"...
M.statusline = server.statusline

return M
