"""The command-line program: ``moorage daemon|drivers|config|bench``."""
