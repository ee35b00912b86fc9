//! The kernel's network stack: smoltcp on one Ethernet device, with the fixed address QEMU's
//! user-mode network expects (10.0.2.15/24 behind the gateway 10.0.2.2), a UDP echo service
//! on port 7, and ICMP echo requests of its own.
//!
//! ARP requests and ICMP echo requests to the kernel's address are answered by smoltcp's
//! interface itself. Generic over the smoltcp `Device`, so host tests drive it with frames
//! they build.

use alloc::vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{icmp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
};

pub const ADDRESS: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub const PREFIX_LEN: u8 = 24;
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// RFC 862's echo port.
pub const ECHO_PORT: u16 = 7;
/// The host's last datagram: echoed like the others, then the service stops.
pub const END_MARKER: &[u8] = b"janus-echo-end";
/// The discard port (RFC 863): where the transmit benchmark sends.
pub const DISCARD_PORT: u16 = 9;
const PING_IDENT: u16 = 0x4a4e;

/// What one round of [`Stack::serve_echo`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoRound {
    pub echoed: u32,
    pub end: bool,
}

pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    echo: SocketHandle,
    ping: SocketHandle,
}

fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]);
    udp::Socket::new(buffer(), buffer())
}

impl Stack {
    /// `now_us` is the clock in microseconds; `seed` randomizes smoltcp's choices (ports).
    pub fn new(mac: [u8; 6], device: &mut impl Device, now_us: i64, seed: u64) -> Self {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, device, Instant::from_micros(now_us));
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(ADDRESS), PREFIX_LEN))
                .expect("an empty interface has room for one address");
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(GATEWAY)
            .expect("an empty route table has room for the default route");
        let mut sockets = SocketSet::new(vec![]);
        let mut echo = udp_socket(32, 64 * 1024);
        echo.bind(ECHO_PORT).expect("port 7 is free on a new stack");
        let echo = sockets.add(echo);
        let buffer =
            || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0; 4096]);
        let mut ping = icmp::Socket::new(buffer(), buffer());
        ping.bind(icmp::Endpoint::Ident(PING_IDENT))
            .expect("a new ICMP socket binds");
        let ping = sockets.add(ping);
        Self {
            iface,
            sockets,
            echo,
            ping,
        }
    }

    /// Moves frames between the device and the sockets; `true` if anything happened.
    pub fn poll(&mut self, now_us: i64, device: &mut impl Device) -> bool {
        self.iface
            .poll(Instant::from_micros(now_us), device, &mut self.sockets)
            != smoltcp::iface::PollResult::None
    }

    /// Microseconds until smoltcp wants to be polled again (retransmits, ARP), if it does.
    pub fn poll_delay_us(&mut self, now_us: i64) -> Option<u64> {
        self.iface
            .poll_delay(Instant::from_micros(now_us), &self.sockets)
            .map(|d| d.total_micros())
    }

    /// Echoes every datagram that arrived on port 7 back to its sender.
    pub fn serve_echo(&mut self) -> EchoRound {
        let socket = self.sockets.get_mut::<udp::Socket>(self.echo);
        let mut round = EchoRound::default();
        let mut datagram = [0u8; 2048];
        while let Ok((len, meta)) = socket.recv_slice(&mut datagram) {
            if socket.send_slice(&datagram[..len], meta.endpoint).is_ok() {
                round.echoed += 1;
            }
            round.end |= &datagram[..len] == END_MARKER;
        }
        round
    }

    /// Queues an ICMP echo request to `target` with sequence number `seq`.
    pub fn send_ping(&mut self, target: Ipv4Address, seq: u16, payload: &[u8]) -> bool {
        let repr = Icmpv4Repr::EchoRequest {
            ident: PING_IDENT,
            seq_no: seq,
            data: payload,
        };
        let socket = self.sockets.get_mut::<icmp::Socket>(self.ping);
        match socket.send(repr.buffer_len(), IpAddress::Ipv4(target)) {
            Ok(buffer) => {
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buffer),
                    &ChecksumCapabilities::default(),
                );
                true
            }
            Err(_) => false,
        }
    }

    /// The sequence number of an echo reply that arrived from `from`, if one did.
    pub fn ping_reply(&mut self, from: Ipv4Address) -> Option<u16> {
        let socket = self.sockets.get_mut::<icmp::Socket>(self.ping);
        while let Ok((bytes, source)) = socket.recv() {
            let packet = Icmpv4Packet::new_checked(bytes).ok()?;
            let repr = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).ok()?;
            if let (Icmpv4Repr::EchoReply { seq_no, .. }, IpAddress::Ipv4(s)) = (repr, source)
                && s == from
            {
                return Some(seq_no);
            }
        }
        None
    }

    /// Queues a datagram from the echo socket to `to`; `false` when its buffer is full.
    pub fn send_udp(&mut self, to: Ipv4Address, port: u16, payload: &[u8]) -> bool {
        self.sockets
            .get_mut::<udp::Socket>(self.echo)
            .send_slice(payload, (IpAddress::Ipv4(to), port))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use smoltcp::phy::{DeviceCapabilities, Medium, RxToken, TxToken};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr,
        IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
    };

    const OUR_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const HOST_MAC: EthernetAddress = EthernetAddress([0x52, 0x55, 10, 0, 2, 2]);

    /// Frames in both directions, for the test to fill and read.
    #[derive(Default)]
    struct Wire {
        to_kernel: VecDeque<Vec<u8>>,
        from_kernel: Vec<Vec<u8>>,
    }

    struct Rx(Vec<u8>);
    struct Tx<'a>(&'a mut Vec<Vec<u8>>);

    impl RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0; len];
            let r = f(&mut frame);
            self.0.push(frame);
            r
        }
    }

    impl Device for Wire {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
            let frame = self.to_kernel.pop_front()?;
            Some((Rx(frame), Tx(&mut self.from_kernel)))
        }

        fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
            Some(Tx(&mut self.from_kernel))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = 1514;
            caps
        }
    }

    fn ethernet(
        dst: EthernetAddress,
        ethertype: EthernetProtocol,
        payload_len: usize,
    ) -> (EthernetRepr, Vec<u8>) {
        let repr = EthernetRepr {
            src_addr: HOST_MAC,
            dst_addr: dst,
            ethertype,
        };
        (repr, vec![0; repr.buffer_len() + payload_len])
    }

    fn arp_request() -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: HOST_MAC,
            source_protocol_addr: GATEWAY,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ADDRESS,
        };
        let (eth, mut frame) = ethernet(
            EthernetAddress::BROADCAST,
            EthernetProtocol::Arp,
            arp.buffer_len(),
        );
        let mut packet = EthernetFrame::new_unchecked(&mut frame);
        eth.emit(&mut packet);
        arp.emit(&mut ArpPacket::new_unchecked(packet.payload_mut()));
        frame
    }

    fn ipv4_frame(
        protocol: IpProtocol,
        payload_len: usize,
        emit: impl FnOnce(&mut [u8]),
    ) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: GATEWAY,
            dst_addr: ADDRESS,
            next_header: protocol,
            payload_len,
            hop_limit: 64,
        };
        let (eth, mut frame) = ethernet(
            EthernetAddress(OUR_MAC),
            EthernetProtocol::Ipv4,
            ip.buffer_len() + payload_len,
        );
        let mut packet = EthernetFrame::new_unchecked(&mut frame);
        eth.emit(&mut packet);
        let mut ipv4 = Ipv4Packet::new_unchecked(packet.payload_mut());
        ip.emit(&mut ipv4, &ChecksumCapabilities::default());
        emit(ipv4.payload_mut());
        frame
    }

    fn parse_ipv4(frame: &[u8]) -> Option<(Ipv4Repr, Vec<u8>)> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).ok()?;
        Some((repr, ip.payload().to_vec()))
    }

    fn stack(wire: &mut Wire) -> Stack {
        Stack::new(OUR_MAC, wire, 0, 7)
    }

    #[test]
    fn answers_arp_for_its_address() {
        let mut wire = Wire::default();
        let mut stack = stack(&mut wire);
        wire.to_kernel.push_back(arp_request());
        stack.poll(1_000, &mut wire);
        let reply = wire.from_kernel.iter().find_map(|f| {
            let eth = EthernetFrame::new_checked(f.as_slice()).ok()?;
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()
        });
        assert_eq!(
            reply,
            Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(OUR_MAC),
                source_protocol_addr: ADDRESS,
                target_hardware_addr: HOST_MAC,
                target_protocol_addr: GATEWAY,
            })
        );
    }

    #[test]
    fn answers_icmp_echo_requests() {
        let mut wire = Wire::default();
        let mut stack = stack(&mut wire);
        let request = Icmpv4Repr::EchoRequest {
            ident: 9,
            seq_no: 3,
            data: b"ping",
        };
        // The reply goes to an address smoltcp learnt from the sender's ARP request.
        wire.to_kernel.push_back(arp_request());
        wire.to_kernel
            .push_back(ipv4_frame(IpProtocol::Icmp, request.buffer_len(), |b| {
                request.emit(
                    &mut Icmpv4Packet::new_unchecked(b),
                    &ChecksumCapabilities::default(),
                )
            }));
        stack.poll(1_000, &mut wire);
        let reply = wire.from_kernel.iter().find_map(|f| {
            let (ip, payload) = parse_ipv4(f)?;
            let packet = Icmpv4Packet::new_checked(payload.as_slice()).ok()?;
            let repr = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).ok()?;
            match repr {
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some((ip.dst_addr, ident, seq_no, data.to_vec())),
                _ => None,
            }
        });
        assert_eq!(reply, Some((GATEWAY, 9, 3, b"ping".to_vec())));
    }

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 40_000,
            dst_port: ECHO_PORT,
        };
        ipv4_frame(IpProtocol::Udp, udp.header_len() + payload.len(), |b| {
            udp.emit(
                &mut UdpPacket::new_unchecked(b),
                &IpAddress::Ipv4(GATEWAY),
                &IpAddress::Ipv4(ADDRESS),
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            )
        })
    }

    #[test]
    fn echoes_udp_datagrams_until_the_end_marker() {
        let mut wire = Wire::default();
        let mut stack = stack(&mut wire);
        // The sender's MAC is learned from its ARP request first.
        wire.to_kernel.push_back(arp_request());
        wire.to_kernel.push_back(udp_frame(b"hello"));
        stack.poll(1_000, &mut wire);
        assert_eq!(
            stack.serve_echo(),
            EchoRound {
                echoed: 1,
                end: false
            }
        );
        wire.to_kernel.push_back(udp_frame(END_MARKER));
        stack.poll(2_000, &mut wire);
        assert_eq!(
            stack.serve_echo(),
            EchoRound {
                echoed: 1,
                end: true
            }
        );
        stack.poll(3_000, &mut wire);
        let echoes: Vec<Vec<u8>> = wire
            .from_kernel
            .iter()
            .filter_map(|f| {
                let (ip, payload) = parse_ipv4(f)?;
                (ip.next_header == IpProtocol::Udp && ip.dst_addr == GATEWAY).then(|| {
                    let udp = UdpPacket::new_checked(payload.as_slice()).unwrap();
                    assert_eq!((udp.src_port(), udp.dst_port()), (ECHO_PORT, 40_000));
                    udp.payload().to_vec()
                })
            })
            .collect();
        assert_eq!(echoes, [b"hello".to_vec(), END_MARKER.to_vec()]);
    }

    #[test]
    fn a_ping_reply_is_matched_to_its_sender() {
        let mut wire = Wire::default();
        let mut stack = stack(&mut wire);
        wire.to_kernel.push_back(arp_request());
        stack.poll(1_000, &mut wire);
        assert!(stack.send_ping(GATEWAY, 5, b"janus"));
        stack.poll(2_000, &mut wire);
        let reply = Icmpv4Repr::EchoReply {
            ident: PING_IDENT,
            seq_no: 5,
            data: b"janus",
        };
        wire.to_kernel
            .push_back(ipv4_frame(IpProtocol::Icmp, reply.buffer_len(), |b| {
                reply.emit(
                    &mut Icmpv4Packet::new_unchecked(b),
                    &ChecksumCapabilities::default(),
                )
            }));
        stack.poll(3_000, &mut wire);
        assert_eq!(stack.ping_reply(ADDRESS), None);
        wire.to_kernel
            .push_back(ipv4_frame(IpProtocol::Icmp, reply.buffer_len(), |b| {
                reply.emit(
                    &mut Icmpv4Packet::new_unchecked(b),
                    &ChecksumCapabilities::default(),
                )
            }));
        stack.poll(4_000, &mut wire);
        assert_eq!(stack.ping_reply(GATEWAY), Some(5));
    }
}
