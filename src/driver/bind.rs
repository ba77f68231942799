//! Which local addresses a connection binds: unspecified addresses expanded to the
//! machine's interfaces, ports from a range. Used when a connection is built and again at
//! each ICE restart (interfaces may have appeared since).

use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    sync::Arc,
};

use crate::{
    error::{Error, Result},
    runtime::{AsyncUdpSocket, Runtime},
};

/// What to bind again at an ICE restart.
#[derive(Debug, Clone)]
pub(crate) struct BindSpec {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) include_loopback: bool,
    pub(crate) port_range: Option<RangeInclusive<u16>>,
}

impl BindSpec {
    /// Binds one socket on `addr`, in the port range if there is one and `addr` has port 0.
    pub(crate) fn bind_one(
        &self,
        runtime: &dyn Runtime,
        addr: SocketAddr,
    ) -> Result<Arc<dyn AsyncUdpSocket>> {
        match &self.port_range {
            Some(ports) if addr.port() == 0 => bind_in_range(runtime, addr, ports),
            _ => Ok(runtime.bind_udp(addr)?),
        }
    }
}

/// Expands unspecified addresses to the interface addresses of their family (loopback and
/// link-local excluded unless `include_loopback`).
pub(crate) fn expand_bind_addresses(
    bind: &[SocketAddr],
    include_loopback: bool,
) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    let mut interfaces: Option<Vec<IpAddr>> = None;
    for addr in bind {
        if !addr.ip().is_unspecified() {
            out.push(*addr);
            continue;
        }
        let ips = match &interfaces {
            Some(ips) => ips,
            None => interfaces.insert(interface_addresses()?),
        };
        for ip in ips {
            let usable = ip.is_ipv4() == addr.is_ipv4()
                && (include_loopback || !ip.is_loopback())
                && !is_link_local(ip);
            if usable {
                out.push(SocketAddr::new(*ip, addr.port()));
            }
        }
    }
    out.dedup();
    Ok(out)
}

fn interface_addresses() -> Result<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = rtc::shared::ifaces::ifaces()?
        .into_iter()
        .filter_map(|i| i.addr.map(|a| a.ip()))
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Binds `addr`'s IP to the first free port of `ports`, trying them from a start that varies
/// from call to call.
pub(crate) fn bind_in_range(
    runtime: &dyn Runtime,
    addr: SocketAddr,
    ports: &RangeInclusive<u16>,
) -> Result<Arc<dyn AsyncUdpSocket>> {
    let (start, end) = ((*ports.start()).max(1), *ports.end());
    let exhausted = || Error::PortRangeExhausted {
        start: *ports.start(),
        end,
    };
    if start > end {
        return Err(exhausted());
    }
    let len = u32::from(end - start) + 1;
    let offset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        % len;
    for i in 0..len {
        let port = start + ((offset + i) % len) as u16;
        match runtime.bind_udp(SocketAddr::new(addr.ip(), port)) {
            Ok(sock) => return Ok(sock),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(exhausted())
}
