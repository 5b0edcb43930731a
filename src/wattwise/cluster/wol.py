"""Wake-on-LAN: the magic packet is 6 bytes 0xFF followed by the 6-byte MAC address 16 times (102 bytes),
sent as a UDP datagram, by default to the broadcast address 255.255.255.255 on port 9 (discard)."""

from __future__ import annotations

import socket

from wattwise.cluster.submission import normalize_mac
from wattwise.errors import WattwiseError

DEFAULT_BROADCAST = "255.255.255.255"
DEFAULT_PORT = 9


def magic_packet(mac: str) -> bytes:
    address = bytes.fromhex(normalize_mac(mac).replace(":", ""))
    return b"\xff" * 6 + address * 16


def send_magic_packet(mac: str, broadcast: str = DEFAULT_BROADCAST, port: int = DEFAULT_PORT) -> bytes:
    """Send the packet for `mac`; returns it."""
    if not 1 <= port <= 65535:
        raise WattwiseError(f"--port must be 1 to 65535, got {port}")
    packet = magic_packet(mac)
    try:
        infos = socket.getaddrinfo(broadcast, port, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise WattwiseError(f"--broadcast {broadcast!r} is not an IPv4 address or host name: {exc}") from exc
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.sendto(packet, infos[0][4])
        except OSError as exc:
            raise WattwiseError(f"cannot send the wake-on-LAN packet to {broadcast}:{port}: {exc}") from exc
    return packet
