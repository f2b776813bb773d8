"""The hostile-input suite: every front end of a running mizu, at bounded rates. Each test
asserts that the controller lives on, that nothing is stored from garbage and that every
reply is a precise error (or a close, where the protocol has no way to answer).

Console (test_console.py; the real telnet client, raw sockets from 127.0.0.2 and up):
  garbage command lines after login, each one precise ERROR; NUL bytes, bytes that are not
  UTF-8, control characters, CR NUL line ends; random telnet IAC sequences (unknown
  commands, negotiations, subnegotiations, empty ones) inside the login and commands, a
  lone IAC at the end of a read; IAC SB without SE (refused past 4096 bytes); a 1 MB line
  before login (refused, closed) and after it (one ERROR, its tail never runs); 20,000
  lines sent without reading the answers (bounded, refused, closed); 200 idle connections
  from 40 addresses and from one (max_unauthenticated and the per-address limit bound
  them, login_timeout closes them, a real login works after); empty and wrong passwords
  and garbage credentials (a pause each, a ban of that address only).
HTTP (test_http.py, test_http_raw.py): an unknown user and a wrong password answered with
  the same bytes in the same time (/mvapireq/ balance and /api/v1/balance with Basic); a
  1 MB header line, a body over max_body, JSON nested 2,000 deep, bytes that are not UTF-8
  in JSON and query strings; garbage request lines, bad Content-Length, bad chunked
  bodies, bad headers, odd JSON, bad Basic credentials.
SMPP (test_smpp.py; the Perl Net::SMPP SMSC sending raw bytes): random command ids
  (generic_nack ESME_RINVCMDID), unsolicited responses (no answer), command_length 0, 15
  and smaller than the body (generic_nack, the link dropped and bound again), a deliver_sm
  before the bind is answered (ESME_RINVBNDSTS). tests/sms/test_smpp_e2e.py covers a
  truncated PDU, a 0x7fffffff command_length and a silent SMSC.
SIP (test_sip.py): thousands of malformed or mutated SIP messages over UDP and TCP against
  a live pjsua2 worker; it answers or drops each and is never restarted.
"""
