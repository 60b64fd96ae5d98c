"""What the servos' replies tell a :class:`~robots.dynamixel.bus.DynamixelBus`, read through
ROBOTIS's ``dynamixel_sdk``.

- :func:`read_sync_reply`: one servo's status packet among a sync read's replies, noting every
  servo heard meanwhile;
- :func:`describe_result`: an SDK result code in words ("no reply", "corrupt reply", ...);
- :func:`sync_read_failure`, :func:`hardware_error`, :func:`status_error`: the exceptions for a
  sync read that found servos silent, a status packet with the hardware-error alert bit, and a
  servo that refused an instruction, each naming the servos through the bus's ``label``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import dynamixel_sdk as sdk
from dynamixel_sdk.protocol2_packet_handler import PKT_ERROR, PKT_ID, PKT_PARAMETER0

from robots.dynamixel import control_table as ct
from robots.dynamixel.errors import (
    ServoCommunicationError,
    ServoHardwareError,
    ServoStatusError,
)


def read_sync_reply(
    packets: sdk.PacketHandler, port: sdk.PortHandler, servo_id: int, size: int, heard: set[int]
) -> tuple[list[int], int, int]:
    """The SDK's ``readRx`` for one servo's reply to a sync read -- (data, result, error) --
    also noting in ``heard`` every servo whose reply packet arrived meanwhile (readRx skips
    the packets of other servos while it waits for this one's)."""
    while True:
        packet, result = packets.rxPacket(port, False)
        if result != sdk.COMM_SUCCESS:
            return [], result, 0
        heard.add(packet[PKT_ID])
        if packet[PKT_ID] == servo_id:
            first = PKT_PARAMETER0 + 1
            return packet[first : first + size], result, packet[PKT_ERROR]


def read_byte(
    packets: sdk.PacketHandler, port: sdk.PortHandler, servo_id: int, address: int
) -> tuple[int, int, int]:
    """One byte of one servo's control table: (value, result, error); value 0 when unread."""
    data, result, error = packets.readTxRx(port, servo_id, address, 1)
    return (data[0] if result == sdk.COMM_SUCCESS and data else 0), result, error


def describe_result(packets: sdk.PacketHandler, result: int) -> str:
    if result == sdk.COMM_RX_TIMEOUT:
        return "no reply"
    if result == sdk.COMM_RX_CORRUPT:
        return "corrupt reply"
    return packets.getTxRxResult(result).replace("[TxRxResult] ", "")


def sync_read_failure(
    what: str,
    failure: str,
    servo_ids: Sequence[int],
    heard: set[int],
    failed_id: int,
    label: Callable[[int], str],
    none_answered_advice: str,
) -> ServoCommunicationError:
    """The error for a sync read (``what``, ending in its last attempt's ``failure``) whose last
    attempt failed: "no servo answered" when no reply arrived at all, else the servos whose replies
    were missing (a wait for a missing reply reads every later reply too) or the one whose reply
    was corrupt."""
    timed_out = failure == "no reply"
    if timed_out and not heard:
        return ServoCommunicationError(
            f"no servo answered {what}: {none_answered_advice}", servo_ids
        )
    missing = [i for i in servo_ids if i not in heard] if timed_out else [failed_id]
    return ServoCommunicationError(
        f"{', '.join(label(i) for i in missing)} did not answer {what}: check "
        f"{'its' if len(missing) == 1 else 'their'} cable and power",
        missing,
    )


def hardware_error(
    statuses: Mapping[int, int], what: str, label: Callable[[int], str]
) -> ServoHardwareError:
    """The error for servos whose status carried the alert bit during a ``what``, given their
    Hardware Error Status (``statuses``: ID -> register value)."""
    details = "; ".join(
        f"{label(i)}: {ct.describe_hardware_error(s)} (Hardware Error Status 0x{s:02X})"
        for i, s in statuses.items()
    )
    return ServoHardwareError(
        f"hardware error reported during a {what}: {details}. The servo has turned its "
        "torque off; remove the cause (load, heat, supply voltage), then power-cycle or "
        "reboot the servo",
        statuses,
    )


def status_error(
    packets: sdk.PacketHandler, servo_id: int, number: int, what: str, label: Callable[[int], str]
) -> ServoStatusError:
    """The error for a servo that refused a ``what`` with status error ``number``."""
    reason = packets.getRxPacketError(number).replace("[RxPacketError] ", "")
    return ServoStatusError(
        f"{label(servo_id)} refused a {what}: {reason} (error {number})", servo_id, number
    )
