"""A plugin that fails to import, as one with a missing dependency does."""

import a_module_that_is_not_installed  # noqa: F401
