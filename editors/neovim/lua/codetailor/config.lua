--- Configuration: typed defaults, validation, and the server's view of the settings.
local M = {}

---@alias codetailor.Multiline "auto"|"always"|"never"
---@alias codetailor.GhostMode "auto"|"native"|"fallback"

--- The server's settings (sent camelCase as `initializationOptions` and
--- `workspace/didChangeConfiguration`).
---@class codetailor.Settings
---@field model? string Model: nil for the server's default (smollm2-135m), a Hugging Face id, a folder or a .gguf file.
---@field adapter? string "auto" (the adapter registered for the workspace), "none", or a LoRA adapter folder made by `codetailor finetune`.
---@field device string "auto", "cpu", "cuda", "cuda:N" or "mps".
---@field dtype string "auto", "float32", "bfloat16", "float16", "int8" or "int4" (CPU).
---@field max_tokens integer Most tokens per completion (1..1024).
---@field multiline codetailor.Multiline How much to complete.
---@field time_budget_ms integer Most milliseconds of decoding per completion, from its first token (50..60000).
---@field first_token_timeout_ms integer Most milliseconds to the first token, the prompt's prefill (100..120000).
---@field enable boolean Show completions at all (`:Codetailor toggle`).
---@field prompt_format? string Override the fill-in-the-middle format.
---@field next_edit_format? string The next-edit prompt layout ("sweep", "zeta"; nil: sweep).
---@field context boolean Add snippets of other workspace files to the prompt.
---@field engine string "local", or "openai:http(s)://HOST:PORT" for an OpenAI-compatible server.
---@field feedback boolean Keep a local log of shown and accepted suggestions (never sent).
---@field quietness integer Show a completion only when it is this likely (percent) to be accepted (0: all).
---@field next_edit boolean Suggest the next edit near the cursor (drawn by the plugin).
---@field next_edit_debounce_ms integer Wait this long after an edit before asking for the next one.
---@field next_edit_window_lines integer Lines above and below the cursor the next edit may touch.

--- Insert-mode keys; `false` leaves a key unmapped.
---@class codetailor.Keymaps
---@field accept string|false Insert the whole completion.
---@field accept_line string|false Insert its next line.
---@field dismiss string|false Hide it.
---@field next string|false Show the next one (or ask again).
---@field next_edit string|false Jump to the shown next edit, then apply it (Insert and Normal mode).

--- Next-edit suggestions as the plugin draws them.
---@class codetailor.NextEditOptions
---@field clear_after_moves integer Hide a shown next edit after this many cursor moves.

---@class codetailor.Config
---@field cmd string[] The command that runs `codetailor serve` on stdio.
---@field filetypes string[] Where to start the server; `{ "*" }` for every file.
---@field root_markers string[] What marks a project's root (for `finetune`).
---@field auth_token? string Sent as `initializationOptions.authToken`.
---@field settings codetailor.Settings
---@field ghost_text codetailor.GhostMode "native" (Neovim 0.12+), "fallback" (extmarks), "auto".
---@field debounce_ms integer Wait this long after typing before asking (fallback ghost text).
---@field keymaps codetailor.Keymaps
---@field next_edit codetailor.NextEditOptions
---@field adapter_dir string Where `:Codetailor finetune` writes adapters.

---@type codetailor.Config
M.defaults = {
  cmd = { "codetailor", "serve" },
  filetypes = {
    "c", "cpp", "cs", "css", "go", "html", "java", "javascript", "javascriptreact", "json",
    "kotlin", "lua", "markdown", "php", "python", "ruby", "rust", "scala", "sh", "sql",
    "swift", "toml", "typescript", "typescriptreact", "vim", "yaml", "zig",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  auth_token = nil,
  settings = {
    model = nil,
    adapter = "auto",
    device = "auto",
    dtype = "auto",
    max_tokens = 64,
    multiline = "auto",
    time_budget_ms = 2000,
    first_token_timeout_ms = 8000,
    enable = true,
    prompt_format = nil,
    next_edit_format = nil,
    context = true,
    engine = "local",
    feedback = true,
    quietness = 25,
    next_edit = true,
    next_edit_debounce_ms = 300,
    next_edit_window_lines = 10,
  },
  ghost_text = "auto",
  debounce_ms = 150,
  keymaps = {
    accept = "<Tab>", accept_line = "<S-Tab>", dismiss = "<C-]>", next = "<M-]>", next_edit = "<Tab>",
  },
  next_edit = { clear_after_moves = 3 },
  adapter_dir = vim.fn.stdpath("data") .. "/codetailor/adapters",
}

---@type codetailor.Config
M.options = vim.deepcopy(M.defaults)

--- The settings a project may not choose (the server's machine-scoped settings): they
--- pick where the user's code and API key go, or load weights. With `cmd` and
--- `auth_token`, they come from the user's own config alone.
M.MACHINE = { "model", "adapter", "engine" }
local MACHINE_OPTIONS = { "cmd", "auth_token" }
--- The project-local files Neovim sources under 'exrc' (once `:trust`ed).
local PROJECT_FILES = { ".nvim.lua", ".nvimrc", ".exrc" }

--- Whether the code running now was started from a project-local config file: a Lua
--- frame loaded from one (`.nvim.lua`), or a Vim script one on the script stack.
---@return boolean
function M.from_project()
  local level = 2
  local info = debug.getinfo(level, "S")
  while info do
    local source = info.source or ""
    if source:sub(1, 1) == "@" and vim.tbl_contains(PROJECT_FILES, vim.fs.basename(source:sub(2))) then
      return true
    end
    level = level + 1
    info = debug.getinfo(level, "S")
  end
  local stack = "/" .. vim.fn.expand("<stack>")
  for _, name in ipairs(PROJECT_FILES) do
    if stack:find("[/ ]" .. vim.pesc(name) .. "%[") then
      return true
    end
  end
  return false
end

--- `opts` with the options a project may not set replaced by their `current` values.
---@param opts table
---@param current codetailor.Config
---@return table opts, string[] refused the options `opts` tried to change
function M.keep_machine(opts, current)
  local kept, refused = vim.deepcopy(opts), {}
  local function keep(t, key, value, name)
    if t[key] ~= nil and not vim.deep_equal(t[key], value) then
      table.insert(refused, name)
    end
    t[key] = vim.deepcopy(value)
  end
  for _, key in ipairs(MACHINE_OPTIONS) do
    keep(kept, key, current[key], key)
  end
  kept.settings = type(kept.settings) == "table" and kept.settings or {}
  for _, key in ipairs(M.MACHINE) do
    keep(kept.settings, key, current.settings[key], "settings." .. key)
  end
  return kept, refused
end

local function one_of(...)
  local choices = { ... }
  return function(v)
    return v == nil or vim.tbl_contains(choices, v), table.concat(choices, ", ")
  end
end

local function whole(low, high)
  return function(v)
    return type(v) == "number" and v == math.floor(v) and v >= low and v <= high,
      ("a whole number from %d to %d"):format(low, high)
  end
end

local function optional_string(v)
  return v == nil or type(v) == "string", "a string or nil"
end

--- Checks on each field: `{ path, check }` where check returns ok, expected.
local CHECKS = {
  { "cmd", function(v) return type(v) == "table" and #v > 0, "a non-empty list of strings" end },
  { "filetypes", function(v) return type(v) == "table", "a list of filetypes" end },
  { "root_markers", function(v) return type(v) == "table", "a list of file names" end },
  { "auth_token", optional_string },
  { "ghost_text", one_of("auto", "native", "fallback") },
  { "debounce_ms", whole(0, 10000) },
  { "adapter_dir", function(v) return type(v) == "string", "a path" end },
  { "settings.model", optional_string },
  { "settings.adapter", optional_string },
  { "settings.device", function(v) return type(v) == "string", "a device name" end },
  { "settings.dtype", one_of("auto", "float32", "bfloat16", "float16", "int8", "int4") },
  { "settings.max_tokens", whole(1, 1024) },
  { "settings.multiline", one_of("auto", "always", "never") },
  { "settings.time_budget_ms", whole(50, 60000) },
  { "settings.first_token_timeout_ms", whole(100, 120000) },
  { "settings.enable", function(v) return type(v) == "boolean", "true or false" end },
  { "settings.prompt_format", optional_string },
  { "settings.next_edit_format", one_of("sweep", "zeta") },
  { "settings.context", function(v) return type(v) == "boolean", "true or false" end },
  { "settings.engine", function(v) return type(v) == "string", "local or openai:URL" end },
  { "settings.feedback", function(v) return type(v) == "boolean", "true or false" end },
  { "settings.next_edit", function(v) return type(v) == "boolean", "true or false" end },
  { "settings.next_edit_debounce_ms", whole(0, 10000) },
  { "settings.next_edit_window_lines", whole(1, 100) },
  { "settings.quietness", whole(0, 95) },
  { "next_edit.clear_after_moves", whole(1, 1000) },
}

local function get_path(t, path)
  for key in path:gmatch("[^.]+") do
    t = t[key]
  end
  return t
end

local function set_path(t, path, value)
  local keys = vim.split(path, ".", { plain = true })
  for i = 1, #keys - 1 do
    t = t[keys[i]]
  end
  t[keys[#keys]] = value
end

--- Merge `opts` over the defaults. A bad value is reported (one message listing
--- every problem) and replaced by its default; unknown keys are reported too.
---@param opts? table
---@return codetailor.Config config, string[] problems
function M.resolve(opts)
  opts = opts or {}
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  for _, list in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts[list] ~= nil then -- a list replaces the default, it does not merge into it
      merged[list] = vim.deepcopy(opts[list])
    end
  end
  local problems = {}
  for _, check in ipairs(CHECKS) do
    local path, fn = check[1], check[2]
    local ok, expected = fn(get_path(merged, path))
    if not ok then
      table.insert(problems, ("%s = %s is invalid (expected %s); using %s"):format(
        path, vim.inspect(get_path(merged, path)), expected, vim.inspect(get_path(M.defaults, path))))
      set_path(merged, path, vim.deepcopy(get_path(M.defaults, path)))
    end
  end
  for key in pairs(opts) do
    if M.defaults[key] == nil and key ~= "auth_token" then
      table.insert(problems, ("unknown option %q (ignored)"):format(key))
    end
  end
  for key, value in pairs(merged.keymaps) do
    if value ~= false and type(value) ~= "string" then
      table.insert(problems, ("keymaps.%s must be a key or false"):format(key))
      merged.keymaps[key] = M.defaults.keymaps[key]
    end
  end
  return merged, problems
end

local WIRE = {
  model = "model", adapter = "adapter", device = "device", dtype = "dtype",
  max_tokens = "maxTokens", multiline = "multiline", time_budget_ms = "timeBudgetMs",
  first_token_timeout_ms = "firstTokenTimeoutMs",
  enable = "enable", prompt_format = "promptFormat", context = "context", engine = "engine",
  feedback = "feedback", next_edit = "nextEdit", next_edit_debounce_ms = "nextEditDebounceMs",
  next_edit_window_lines = "nextEditWindowLines", next_edit_format = "nextEditFormat",
  quietness = "quietness",
}

--- The settings as the server names them; an unset string is sent as null (the
--- server's own default).
---@param settings codetailor.Settings
---@return table<string, any>
function M.to_wire(settings)
  local out = {}
  for key, wire in pairs(WIRE) do
    local value = settings[key]
    if value == nil or value == "" then
      value = vim.NIL
    end
    out[wire] = value
  end
  return out
end

--- `initializationOptions`: the settings, that the plugin draws next edits, plus the
--- auth token when there is one.
---@param config codetailor.Config
function M.init_options(config)
  local options = M.to_wire(config.settings)
  -- The plugin asks for next edits and draws them (next_edit.lua): an empty completion
  -- need not wait for one drawn as inline text.
  options.drawsNextEdits = true
  if config.auth_token and config.auth_token ~= "" then
    options.authToken = config.auth_token
  end
  return options
end

--- The command that runs the `codetailor` CLI: `cmd` up to (without) `serve`.
---@param cmd string[]
---@return string[]
function M.cli_prefix(cmd)
  for i, arg in ipairs(cmd) do
    if arg == "serve" then
      return vim.list_slice(cmd, 1, i - 1)
    end
  end
  return { cmd[1] }
end

return M
