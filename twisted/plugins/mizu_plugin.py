from twisted.application.service import ServiceMaker

mizu = ServiceMaker(
    "mizu",
    "mizu.tap",
    "Callback and prepaid calling-card server (SIP, SMS, HTTP, telnet console).",
    "mizu",
)
