"""The `genai-jobs` command line."""
