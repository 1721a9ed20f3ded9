import sys

from klein import Klein

from twisted_close import DelayedResource, Ledger

app = Klein()
ledger = Ledger()
slow = DelayedResource("slow hello", delay=2.0, ledger=ledger)


@app.route("/slow", branch=True)
def slow_route(request: object) -> DelayedResource:
    return slow


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "tcp:8080:interface=127.0.0.1"
    app.run(endpoint_description=where)  # logs to standard output
