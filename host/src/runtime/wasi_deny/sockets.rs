//! `wasi:sockets` (every interface of WASI 0.2.12) with no network behind
//! it: a socket is a host-side record of its address family; binding,
//! connecting, listening, opening a UDP stream, setting or reading an option
//! and resolving a name are answered `access-denied` and counted. Streams,
//! accepted sockets and lookup results never exist: the types that would
//! hold them have no values.

// The generated items carry the WIT's doc comments.
#![allow(missing_docs)]

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::io::poll::Pollable as PollableHandle;
use wasmtime_wasi::p2::{Pollable, subscribe};

use self::wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use self::wasi::sockets::{
    instance_network, ip_name_lookup, network, tcp, tcp_create_socket, udp, udp_create_socket,
};
use super::{Denier, Deny, GetDenier, quoted};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasi:sockets/imports@0.2.12",
    imports: { default: trappable },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:sockets/network.network": crate::runtime::wasi_deny::sockets::NoNetwork,
        "wasi:sockets/tcp.tcp-socket": crate::runtime::wasi_deny::sockets::TcpRecord,
        "wasi:sockets/udp.udp-socket": crate::runtime::wasi_deny::sockets::UdpRecord,
        "wasi:sockets/udp.incoming-datagram-stream": crate::runtime::wasi_deny::sockets::NoIncoming,
        "wasi:sockets/udp.outgoing-datagram-stream": crate::runtime::wasi_deny::sockets::NoOutgoing,
        "wasi:sockets/ip-name-lookup.resolve-address-stream": crate::runtime::wasi_deny::sockets::NoLookup,
    },
});

/// The `network` handle `instance-network` gives out: it grants nothing.
pub struct NoNetwork;

/// A TCP socket: only its address family. No OS socket is ever created.
pub struct TcpRecord(IpAddressFamily);

/// A UDP socket: only its address family.
pub struct UdpRecord(IpAddressFamily);

/// What an incoming datagram stream would be: no value exists (a UDP
/// stream is refused), so no handle of it can reach a method.
pub enum NoIncoming {}

/// What an outgoing datagram stream would be; no value exists.
pub enum NoOutgoing {}

/// What a name lookup's results would be; no value exists (every lookup is
/// refused).
pub enum NoLookup {}

/// The body of a method on a type without values: looking the handle up
/// fails, and the compiler checks that no value could have been found.
macro_rules! unreachable_handle {
    ($self:ident, $handle:ident) => {
        match *$self.table.get(&$handle)? {}
    };
}

type Answer<T> = wasmtime::Result<Result<T, ErrorCode>>;

impl Denier<'_> {
    /// Count a refusal of `what` and answer `access-denied`.
    fn refuse<T>(&mut self, what: impl FnOnce() -> String) -> Answer<T> {
        self.denials.record(what);
        Ok(Err(ErrorCode::AccessDenied))
    }

    fn tcp_family(&mut self, socket: &Resource<TcpRecord>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(socket)?.0)
    }

    fn udp_family(&mut self, socket: &Resource<UdpRecord>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(socket)?.0)
    }
}

fn address(addr: &IpSocketAddress) -> String {
    match addr {
        IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: a }) => {
            format!("{}.{}.{}.{}:{port}", a.0, a.1, a.2, a.3)
        }
        IpSocketAddress::Ipv6(Ipv6SocketAddress {
            port, address: a, ..
        }) => {
            let ip = std::net::Ipv6Addr::new(a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7);
            format!("[{ip}]:{port}")
        }
    }
}

/// A socket is always ready: every operation on it answers at once.
#[wasmtime_wasi::async_trait]
impl Pollable for TcpRecord {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl Pollable for UdpRecord {
    async fn ready(&mut self) {}
}

pub(super) fn add_to_linker<T: Send + 'static>(
    l: &mut Linker<T>,
    denier: GetDenier<T>,
) -> wasmtime::Result<()> {
    network::add_to_linker::<_, Deny>(l, &Default::default(), denier)?;
    instance_network::add_to_linker::<_, Deny>(l, denier)?;
    ip_name_lookup::add_to_linker::<_, Deny>(l, denier)?;
    tcp::add_to_linker::<_, Deny>(l, denier)?;
    tcp_create_socket::add_to_linker::<_, Deny>(l, denier)?;
    udp::add_to_linker::<_, Deny>(l, denier)?;
    udp_create_socket::add_to_linker::<_, Deny>(l, denier)
}

impl network::Host for Denier<'_> {
    fn network_error_code(
        &mut self,
        _err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        // Unstable in WASI 0.2 and not linked (default link options); no
        // stream ever comes from a socket anyway.
        Ok(None)
    }
}

impl network::HostNetwork for Denier<'_> {
    fn drop(&mut self, rep: Resource<NoNetwork>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl instance_network::Host for Denier<'_> {
    fn instance_network(&mut self) -> wasmtime::Result<Resource<NoNetwork>> {
        Ok(self.table.push(NoNetwork)?)
    }
}

impl ip_name_lookup::Host for Denier<'_> {
    fn resolve_addresses(
        &mut self,
        _network: Resource<NoNetwork>,
        name: String,
    ) -> Answer<Resource<NoLookup>> {
        self.refuse(|| format!("name lookup of {}", quoted(&name)))
    }
}

impl ip_name_lookup::HostResolveAddressStream for Denier<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<NoLookup>,
    ) -> Answer<Option<network::IpAddress>> {
        unreachable_handle!(self, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<NoLookup>,
    ) -> wasmtime::Result<Resource<PollableHandle>> {
        unreachable_handle!(self, stream)
    }

    fn drop(&mut self, stream: Resource<NoLookup>) -> wasmtime::Result<()> {
        unreachable_handle!(self, stream)
    }
}

impl tcp_create_socket::Host for Denier<'_> {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> Answer<Resource<TcpRecord>> {
        Ok(Ok(self.table.push(TcpRecord(family))?))
    }
}

impl udp_create_socket::Host for Denier<'_> {
    fn create_udp_socket(&mut self, family: IpAddressFamily) -> Answer<Resource<UdpRecord>> {
        Ok(Ok(self.table.push(UdpRecord(family))?))
    }
}

impl tcp::Host for Denier<'_> {}
impl udp::Host for Denier<'_> {}

type Tcp = Resource<TcpRecord>;
type Udp = Resource<UdpRecord>;
type Duration = u64;

/// Every option read or written: refused, the socket has none to offer.
macro_rules! refused_options {
    ($socket:ty, $kind:literal: $($get:ident / $set:ident: $ty:ty),* $(,)?) => {
        $(
            fn $get(&mut self, _socket: $socket) -> Answer<$ty> {
                self.refuse(|| format!("{} option {}", $kind, stringify!($get)))
            }

            fn $set(&mut self, _socket: $socket, _value: $ty) -> Answer<()> {
                self.refuse(|| format!("{} option {}", $kind, stringify!($set)))
            }
        )*
    };
}

impl tcp::HostTcpSocket for Denier<'_> {
    fn start_bind(&mut self, _: Tcp, _: Resource<NoNetwork>, local: IpSocketAddress) -> Answer<()> {
        self.refuse(|| format!("tcp bind to {}", address(&local)))
    }

    fn finish_bind(&mut self, _: Tcp) -> Answer<()> {
        Ok(Err(ErrorCode::NotInProgress))
    }

    fn start_connect(
        &mut self,
        _: Tcp,
        _: Resource<NoNetwork>,
        remote: IpSocketAddress,
    ) -> Answer<()> {
        self.refuse(|| format!("tcp connect to {}", address(&remote)))
    }

    fn finish_connect(
        &mut self,
        _: Tcp,
    ) -> Answer<(
        Resource<wasmtime_wasi::p2::DynInputStream>,
        Resource<wasmtime_wasi::p2::DynOutputStream>,
    )> {
        Ok(Err(ErrorCode::NotInProgress))
    }

    fn start_listen(&mut self, _: Tcp) -> Answer<()> {
        self.refuse(|| "tcp listen".to_string())
    }

    fn finish_listen(&mut self, _: Tcp) -> Answer<()> {
        Ok(Err(ErrorCode::NotInProgress))
    }

    fn accept(
        &mut self,
        _: Tcp,
    ) -> Answer<(
        Tcp,
        Resource<wasmtime_wasi::p2::DynInputStream>,
        Resource<wasmtime_wasi::p2::DynOutputStream>,
    )> {
        // Never listening: what the WIT answers for such a socket.
        Ok(Err(ErrorCode::InvalidState))
    }

    fn local_address(&mut self, _: Tcp) -> Answer<IpSocketAddress> {
        Ok(Err(ErrorCode::InvalidState))
    }

    fn remote_address(&mut self, _: Tcp) -> Answer<IpSocketAddress> {
        Ok(Err(ErrorCode::InvalidState))
    }

    fn is_listening(&mut self, _: Tcp) -> wasmtime::Result<bool> {
        Ok(false)
    }

    fn address_family(&mut self, socket: Tcp) -> wasmtime::Result<IpAddressFamily> {
        self.tcp_family(&socket)
    }

    fn set_listen_backlog_size(&mut self, _: Tcp, _: u64) -> Answer<()> {
        self.refuse(|| "tcp option set_listen_backlog_size".to_string())
    }

    refused_options!(Tcp, "tcp":
        keep_alive_enabled / set_keep_alive_enabled: bool,
        keep_alive_idle_time / set_keep_alive_idle_time: Duration,
        keep_alive_interval / set_keep_alive_interval: Duration,
        keep_alive_count / set_keep_alive_count: u32,
        hop_limit / set_hop_limit: u8,
        receive_buffer_size / set_receive_buffer_size: u64,
        send_buffer_size / set_send_buffer_size: u64,
    );

    fn subscribe(&mut self, socket: Tcp) -> wasmtime::Result<Resource<PollableHandle>> {
        subscribe(self.table, socket)
    }

    fn shutdown(&mut self, _: Tcp, _: tcp::ShutdownType) -> Answer<()> {
        // Never connected.
        Ok(Err(ErrorCode::InvalidState))
    }

    fn drop(&mut self, socket: Tcp) -> wasmtime::Result<()> {
        self.table.delete(socket)?;
        Ok(())
    }
}

impl udp::HostUdpSocket for Denier<'_> {
    fn start_bind(&mut self, _: Udp, _: Resource<NoNetwork>, local: IpSocketAddress) -> Answer<()> {
        self.refuse(|| format!("udp bind to {}", address(&local)))
    }

    fn finish_bind(&mut self, _: Udp) -> Answer<()> {
        Ok(Err(ErrorCode::NotInProgress))
    }

    fn stream(
        &mut self,
        _: Udp,
        remote: Option<IpSocketAddress>,
    ) -> Answer<(Resource<NoIncoming>, Resource<NoOutgoing>)> {
        self.refuse(|| match remote {
            Some(remote) => format!("udp stream to {}", address(&remote)),
            None => "udp stream".to_string(),
        })
    }

    fn local_address(&mut self, _: Udp) -> Answer<IpSocketAddress> {
        Ok(Err(ErrorCode::InvalidState))
    }

    fn remote_address(&mut self, _: Udp) -> Answer<IpSocketAddress> {
        Ok(Err(ErrorCode::InvalidState))
    }

    fn address_family(&mut self, socket: Udp) -> wasmtime::Result<IpAddressFamily> {
        self.udp_family(&socket)
    }

    refused_options!(Udp, "udp":
        unicast_hop_limit / set_unicast_hop_limit: u8,
        receive_buffer_size / set_receive_buffer_size: u64,
        send_buffer_size / set_send_buffer_size: u64,
    );

    fn subscribe(&mut self, socket: Udp) -> wasmtime::Result<Resource<PollableHandle>> {
        subscribe(self.table, socket)
    }

    fn drop(&mut self, socket: Udp) -> wasmtime::Result<()> {
        self.table.delete(socket)?;
        Ok(())
    }
}

impl udp::HostIncomingDatagramStream for Denier<'_> {
    fn receive(
        &mut self,
        stream: Resource<NoIncoming>,
        _: u64,
    ) -> Answer<Vec<udp::IncomingDatagram>> {
        unreachable_handle!(self, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<NoIncoming>,
    ) -> wasmtime::Result<Resource<PollableHandle>> {
        unreachable_handle!(self, stream)
    }

    fn drop(&mut self, stream: Resource<NoIncoming>) -> wasmtime::Result<()> {
        unreachable_handle!(self, stream)
    }
}

impl udp::HostOutgoingDatagramStream for Denier<'_> {
    fn check_send(&mut self, stream: Resource<NoOutgoing>) -> Answer<u64> {
        unreachable_handle!(self, stream)
    }

    fn send(&mut self, stream: Resource<NoOutgoing>, _: Vec<udp::OutgoingDatagram>) -> Answer<u64> {
        unreachable_handle!(self, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<NoOutgoing>,
    ) -> wasmtime::Result<Resource<PollableHandle>> {
        unreachable_handle!(self, stream)
    }

    fn drop(&mut self, stream: Resource<NoOutgoing>) -> wasmtime::Result<()> {
        unreachable_handle!(self, stream)
    }
}
