"""SMTP DATA read into one buffer, with aiosmtpd's rules (1.4.6, ``SMTP.smtp_DATA``).

aiosmtpd keeps every line of the mail as a ``bytearray`` in a list (for a mail of base64
lines the objects' headers double its size) and then joins them: about four times the mail
before the handler sees it. ``DataBuffer`` writes each dot-unstuffed line into one
``BytesIO`` instead, whose ``getvalue()`` hands over the buffer itself rather than a copy,
so the mail is in memory once; ``BufferedDataSMTP`` is aiosmtpd's server with its DATA
command reading through it (``receive.GatewaySMTP`` builds on it). What it answers is
aiosmtpd's:

- the mail ends at a line that is only ``.`` (RFC 5321 4.1.1.4); a leading dot of any other
  line is removed (4.5.2);
- past ``data_size_limit`` (dots and line ends counted, as aiosmtpd counts them) the mail
  is dropped but read to its end, then refused with 552 (4.5.3.1.10; RFC 1870);
- a line longer than the limit is drained, the mail dropped and read to its end, then
  refused with 500 (4.5.3.1.6). Whichever verdict came first stands.
"""

from __future__ import annotations

import asyncio
import io
import logging

from aiosmtpd.smtp import MISSING, SMTP, syntax

__all__ = ["END", "TOO_LONG", "TOO_MUCH", "BufferedDataSMTP", "DataBuffer"]

log = logging.getLogger(__name__)

END = b".\r\n"
LINE_END = b"\r\n"
# aiosmtpd's own wording: receive.py gives 552 its enhanced status code (RFC 3463), lmtp.py
# gives one to every reply.
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH = "552 Error: Too much mail data"


class DataBuffer:
    """The lines of one mail as they arrive; once the mail is refused, only the verdict.

    Fed by the server with each line (``take``) and told when the stream reader found no
    line end within its limit (``overrun``); the pieces that follow an overrun are the rest
    of that line, so ``.`` alone is the end of the mail only at the start of a line.
    """

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self._buffer: io.BytesIO | None = io.BytesIO()
        self._size_limit = size_limit
        self._line_limit = line_limit
        self._size = 0
        self._mid_line = False
        self.refusal: str | None = None
        self.complete = False

    def overrun(self) -> None:
        """A line longer than the stream reader's limit: the mail is refused as too long
        (unless it is already too big), and what follows is read only to find the end."""
        self._refuse(TOO_LONG)

    def take(self, piece: bytes) -> None:
        """One line as read, line end included, or a piece of an over-long line."""
        if not self._mid_line and piece == END:
            self.complete = True
            return
        self._size += len(piece)
        if self._size_limit and self._size > self._size_limit:
            self._refuse(TOO_MUCH)
        self._mid_line = not piece.endswith(LINE_END)
        if self._buffer is None:
            return
        if self._mid_line or len(piece) > self._line_limit:
            self._refuse(TOO_LONG)
        elif piece.startswith(b"."):
            self._buffer.write(memoryview(piece)[1:])
        else:
            self._buffer.write(piece)

    def content(self) -> bytes:
        """The whole mail, dot-unstuffed. The buffer is handed over and forgotten: no
        second copy of the mail stays alive while the pipeline runs."""
        if self._buffer is None or not self.complete:
            raise RuntimeError("the mail was refused or is not complete")
        data, self._buffer = self._buffer.getvalue(), None
        return data

    def _refuse(self, reply: str) -> None:
        """The first verdict stands; what was read is dropped at once."""
        if self.refusal is None:
            self.refusal = reply
            self._buffer = None


class BufferedDataSMTP(SMTP):
    """aiosmtpd's server, its DATA command read through a ``DataBuffer``."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA (1.4.6) with the mail read into a ``DataBuffer`` instead of a
        list of lines, which took four times the mail. The checks, replies, handler
        hook and envelope reset are aiosmtpd's (bar the deprecated ``process_message``: our
        handlers have ``handle_DATA``); the timer, as there, is not restarted while the data
        arrives (``handle_DATA`` restarts it for the processing)."""
        if not await self._may_send_data(arg):
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        if not data.complete:
            return  # the connection went away: nothing to answer, nothing to process
        if data.refusal is not None:
            await self.push(data.refusal)
            self._new_envelope()
            return
        if not await self._set_content(data.content()):
            return
        status = await self._call_handler_hook("DATA")
        self._new_envelope()
        await self.push("250 OK" if status is MISSING else status)

    def _new_envelope(self) -> None:
        """aiosmtpd's ``_set_post_data_state`` (untyped there): the next mail starts afresh."""
        self.envelope = self._create_envelope()

    async def _may_send_data(self, arg: str) -> bool:
        """aiosmtpd's refusals before 354: no HELO/EHLO (503), no login where one is
        required (530), no recipient yet (503, so no MAIL either), an argument (501)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return False
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return False
        if arg:
            await self.push("501 Syntax: DATA")
            return False
        return True

    async def _read_data(self) -> DataBuffer:
        """Lines until the end of data; a line over the reader's limit is drained in pieces
        (aiosmtpd's reader is made with ``line_length_limit`` as its limit)."""
        data = DataBuffer(self.data_size_limit, self.line_length_limit)
        while self.transport is not None and not data.complete:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("%s: connection lost during DATA", self.session and self.session.peer)
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                data.overrun()
                line = await self._reader.read(exc.consumed)
            data.take(line)
        return data

    async def _set_content(self, original: bytes) -> bool:
        """The envelope's ``original_content`` (bytes) and ``content`` (the same object, or
        with ``decode_data`` the text: UTF-8 with SMTPUTF8, else strict ASCII or 500)."""
        assert self.envelope is not None
        content: str | bytes = original
        if self._decode_data and self.enable_SMTPUTF8:
            content = original.decode("utf-8", errors="surrogateescape")
        elif self._decode_data:
            try:
                content = original.decode("ascii", errors="strict")
            except UnicodeDecodeError:
                await self.push("500 Error: strict ASCII mode")
                return False
        self.envelope.content = content
        self.envelope.original_content = original
        return True
