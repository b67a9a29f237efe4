-- SPDX-License-Identifier: Apache-2.0
-- twin_ext in a kit-app-template build (place or link this folder as source/extensions/twin_ext).
-- The repository root is the extension folder, so the build links the folders Kit needs next to
-- extension.toml in the target directory; `make test` mirrors this by symlinking the root as
-- <exts>/twin_ext (tests/kit_harness.py).
local ext = get_current_extension_info()

project_ext(ext)

-- Link, don't copy: edits in the source tree are live in the built extension.
repo_build.prebuild_link {
    { "twin_ext", ext.target_dir.."/twin_ext" },
    { "config", ext.target_dir.."/config" },
    { "data", ext.target_dir.."/data" },
    { "docs", ext.target_dir.."/docs" },
    { "usd", ext.target_dir.."/usd" },
}

-- The manifest sits at the extension root (not in config/, which holds the twin's own configuration),
-- so it is copied next to the links.
repo_build.copy_to_dir("extension.toml", ext.target_dir)
