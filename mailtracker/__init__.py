"""mailtracker: an email-first issue tracker.

Mail comes in over SMTP (or a pipe from the MTA), runs through the stages named in
``pipeline.py`` and ends in one database transaction; notifications leave through the
outbox. Nothing runs at import time.
"""

__version__ = "0.1.0"
