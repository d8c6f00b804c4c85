"""Configures a running Jasmin through its jCli console: a user for billpush, an SMPP client
connector to the drill's SMSC, and a default MT route to it.
Usage: python3 jcli.py JCLI_PORT SMSC_PORT USERNAME PASSWORD"""
import socket
import sys
import time

def main(jcli_port, smsc_port, username, password):
    sock = socket.create_connection(("127.0.0.1", int(jcli_port)), timeout=30)

    def read_until(done):
        data = b""
        while not done(data):
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("jCli closed the connection: " + data.decode(errors="replace"))
            data += chunk
        return data.decode(errors="replace")

    def send(line):
        sock.sendall(line.encode() + b"\r\n")
        answer = read_until(lambda data: data.rstrip(b" ").endswith((b"jcli :", b">")))
        if "Error" in answer or "Unknown" in answer:
            raise SystemExit(f"jCli refused {line!r}: {answer}")
        return answer

    # The banner ends with the session reference; the console prompts only after a command.
    read_until(lambda data: b"Session ref" in data and data.endswith(b"\n"))
    for block in (
        ["group -a", "gid billpush", "ok"],
        ["user -a", f"username {username}", f"password {password}", "gid billpush", f"uid {username}", "ok"],
        ["smppccm -a", "cid smsc", "host 127.0.0.1", f"port {smsc_port}", "username smsc", "password smsc", "submit_throughput 0", "ok"],
        ["smppccm -1 smsc"],
        ["mtrouter -a", "type defaultroute", "connector smppc(smsc)", "rate 0.00", "ok"],
    ):
        for line in block:
            send(line)
    # Wait until the connector is bound to the SMSC.
    for _ in range(60):
        if "BOUND" in send("smppccm -l").upper():
            break
        time.sleep(0.5)
    else:
        raise SystemExit("the SMPP connector never bound to the SMSC")
    sock.sendall(b"quit\r\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
