"""A minimal SMPP 3.4 SMSC for the Jasmin drill: accepts binds and submit_sm, answers with a
message id, and sends a DELIVRD delivery receipt (deliver_sm, esm_class 0x04) for every
message that asked for one. Prints each destination it accepted with the part's data_coding,
one per line, so a drill can count parts per number and check their encoding.
Usage: python3 smsc.py PORT"""
import asyncio
import struct
import sys
import time
import itertools

BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x04, 0x05, 0x06, 0x15
RESP = 0x80000000
ids = itertools.count(1)
sequence = itertools.count(1)


def cstring(body, at):
    end = body.index(b"\0", at)
    return body[at:end], end + 1


def pdu(command, status, seq, body=b""):
    return struct.pack(">IIII", 16 + len(body), command, status, seq) + body


def receipt(submit):
    """The fields of a deliver_sm receipt answering a submit_sm body."""
    at = 0
    _, at = cstring(submit, at)  # service_type
    src_ton, src_npi = submit[at], submit[at + 1]
    source, at = cstring(submit, at + 2)
    dst_ton, dst_npi = submit[at], submit[at + 1]
    dest, at = cstring(submit, at + 2)
    _, at = cstring(submit, at + 3)  # esm_class, protocol_id, priority_flag, then schedule_delivery_time
    _, at = cstring(submit, at)  # validity_period
    registered = submit[at]
    data_coding = submit[at + 2]  # after replace_if_present_flag
    return src_ton, src_npi, source, dst_ton, dst_npi, dest, registered, data_coding


async def serve(reader, writer):
    try:
        while True:
            header = await reader.readexactly(16)
            length, command, status, seq = struct.unpack(">IIII", header)
            body = await reader.readexactly(length - 16)
            if command in (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER):
                writer.write(pdu(command | RESP, 0, seq, b"billpush-smsc\0"))
            elif command == ENQUIRE_LINK:
                writer.write(pdu(ENQUIRE_LINK | RESP, 0, seq))
            elif command == UNBIND:
                writer.write(pdu(UNBIND | RESP, 0, seq))
                await writer.drain()
                break
            elif command == SUBMIT_SM:
                message_id = b"%08x" % next(ids)
                writer.write(pdu(SUBMIT_SM | RESP, 0, seq, message_id + b"\0"))
                src_ton, src_npi, source, dst_ton, dst_npi, dest, registered, data_coding = receipt(body)
                print(dest.decode(), data_coding, flush=True)
                if registered & 0x01:
                    stamp = time.strftime("%y%m%d%H%M").encode()
                    text = b"id:" + message_id + b" sub:001 dlvrd:001 submit date:" + stamp + b" done date:" + stamp + b" stat:DELIVRD err:000 text:"
                    fields = (
                        b"\0" + bytes([dst_ton, dst_npi]) + dest + b"\0" + bytes([src_ton, src_npi]) + source + b"\0"
                        + bytes([0x04, 0, 0]) + b"\0" + b"\0" + bytes([0, 0, 0, 0, len(text)]) + text
                    )
                    # receipted_message_id and message_state (2 = DELIVERED) as TLVs too.
                    fields += struct.pack(">HH", 0x001E, len(message_id) + 1) + message_id + b"\0"
                    fields += struct.pack(">HHB", 0x0427, 1, 2)
                    # Like a real SMSC, report delivery a moment later, once Jasmin has
                    # recorded the message id it just got.
                    asyncio.get_running_loop().call_later(0.3, writer.write, pdu(DELIVER_SM, 0, next(sequence), fields))
            elif command & RESP:
                pass  # deliver_sm_resp and the like
            else:
                writer.write(pdu(0x80000000, 0x03, seq))  # generic_nack: invalid command
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
