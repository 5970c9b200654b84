"""Model families behind the tower interface (``base``), and the loader that picks one (``loading``)."""
