from twisted.application.service import ServiceMaker

closedemo = ServiceMaker(
    "closedemo",
    "twisted_close.closedemo.tap",
    "Answer after a delay; report and cancel when the client leaves first.",
    "closedemo",
)
