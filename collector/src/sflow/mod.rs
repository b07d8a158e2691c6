//! sFlow v5 datagram decoding (<https://sflow.org/sflow_version_5.txt>).
//!
//! A zero-copy decoder of our own: [`decode`] reads the datagram header and
//! hands back a [`Datagram`] whose samples, and each sample's records, are
//! iterated lazily over the borrowed buffer. Nothing is allocated.
//!
//! Robustness: samples and records are XDR opaques with their own length, so
//! one malformed sample or record is reported as an error *for that item* and
//! iteration continues with the next one. Only a length that runs past its
//! enclosing buffer (framing is lost) ends the iteration of that level; items
//! already returned are kept. `sflow-parser` 0.7 (which rejects the whole
//! datagram on any error) is the oracle of a differential test
//! (`tests/sflow_differential.rs`).
//!
//! [`encode`] builds datagrams for tests, seeds and the benchmark.

pub mod encode;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What went wrong, and where. `kind()` names the counter in ingest stats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Ran out of bytes while reading `what` at byte `offset` of its buffer.
    #[error("truncated {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    /// Not an sFlow version 5 datagram.
    #[error("unsupported sFlow version {0}")]
    Version(u32),
    /// Address type other than 0 (unknown), 1 (IPv4), 2 (IPv6).
    #[error("invalid address type {0}")]
    AddressType(u32),
    /// A length field that cannot be right (e.g. a header longer than its record).
    #[error("invalid length {len} for {what}")]
    Length { what: &'static str, len: u32 },
}

impl DecodeError {
    /// Stable short name, used as a label in statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::Version(_) => "version",
            DecodeError::AddressType(_) => "address_type",
            DecodeError::Length { .. } => "length",
        }
    }
}

/// Big-endian XDR reader over a borrowed slice.
#[derive(Debug, Clone)]
pub(crate) struct Xdr<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Xdr<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    #[inline]
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match self.buf.get(self.pos..self.pos + 4) {
            Some(b) => {
                self.pos += 4;
                Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            None => Err(DecodeError::Truncated {
                what,
                offset: self.pos,
            }),
        }
    }
    #[inline]
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let hi = self.u32(what)? as u64;
        let lo = self.u32(what)? as u64;
        Ok(hi << 32 | lo)
    }
    #[inline]
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self.buf.get(self.pos..self.pos.saturating_add(n)) {
            Some(b) if self.pos.checked_add(n).is_some() => {
                self.pos += n;
                Ok(b)
            }
            _ => Err(DecodeError::Truncated {
                what,
                offset: self.pos,
            }),
        }
    }
    /// XDR variable-length opaque: length, bytes, padding to 4.
    #[inline]
    fn opaque(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.u32(what)? as usize;
        let padded = len.checked_add(3).map(|l| l & !3).unwrap_or(usize::MAX);
        if padded > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                offset: start,
            });
        }
        let b = &self.buf[self.pos..self.pos + len];
        self.pos += padded;
        Ok(b)
    }
    fn address(&mut self) -> Result<Option<IpAddr>, DecodeError> {
        match self.u32("address type")? {
            0 => Ok(None),
            1 => {
                let b = self.bytes(4, "IPv4 address")?;
                Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
            }
            2 => {
                let b = self.bytes(16, "IPv6 address")?;
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ok(Some(IpAddr::V6(Ipv6Addr::from(a))))
            }
            t => Err(DecodeError::AddressType(t)),
        }
    }
}

/// The datagram header; samples are read lazily with [`Datagram::samples`].
#[derive(Debug, Clone)]
pub struct Datagram<'a> {
    /// Agent address as written in the datagram (`None`: type "unknown").
    pub agent: Option<IpAddr>,
    pub sub_agent_id: u32,
    /// Datagram sequence number (per agent and sub-agent).
    pub sequence: u32,
    /// Agent uptime in milliseconds.
    pub uptime_ms: u32,
    /// Number of samples the header announces.
    pub num_samples: u32,
    body: &'a [u8],
}

/// Decodes the datagram header. Errors here mean nothing in the datagram can
/// be trusted (wrong version, truncated header).
pub fn decode(buf: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    let mut x = Xdr::new(buf);
    let version = x.u32("version")?;
    if version != 5 {
        return Err(DecodeError::Version(version));
    }
    let agent = x.address()?;
    let sub_agent_id = x.u32("sub_agent_id")?;
    let sequence = x.u32("sequence")?;
    let uptime_ms = x.u32("uptime")?;
    let num_samples = x.u32("num_samples")?;
    Ok(Datagram {
        agent,
        sub_agent_id,
        sequence,
        uptime_ms,
        num_samples,
        body: &buf[x.pos..],
    })
}

impl<'a> Datagram<'a> {
    /// Iterates the samples: each item is a sample or the error of that one
    /// sample. After a framing error (a length past the end) iteration stops.
    pub fn samples(&self) -> Samples<'a> {
        Samples {
            x: Xdr::new(self.body),
            left: self.num_samples,
            done: false,
        }
    }
}

/// Iterator over the samples of a datagram.
#[derive(Debug, Clone)]
pub struct Samples<'a> {
    x: Xdr<'a>,
    left: u32,
    done: bool,
}

impl<'a> Iterator for Samples<'a> {
    type Item = Result<Sample<'a>, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let format = match self.x.u32("sample format") {
            Ok(f) => f,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let body = match self.x.opaque("sample") {
            Ok(b) => b,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        Some(Sample::parse(format >> 12, format & 0xfff, body))
    }
}

/// Expanded or compact interface/data-source values, kept as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceId {
    /// 0 = ifIndex, 1 = smonVlanDataSource, 2 = entPhysicalEntry.
    pub kind: u32,
    pub index: u32,
}

/// One sample.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Sample<'a> {
    /// Flow sample (0,1) or expanded flow sample (0,3).
    Flow(FlowSample<'a>),
    /// Counter sample (0,2) or expanded counter sample (0,4).
    Counters(CountersSample<'a>),
    /// Any other format, kept undecoded.
    Other {
        enterprise: u32,
        format: u32,
        data: &'a [u8],
    },
}

/// A flow sample; records are read with [`FlowSample::records`].
#[derive(Debug, Clone)]
pub struct FlowSample<'a> {
    pub expanded: bool,
    pub sequence: u32,
    pub source: SourceId,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    /// Cumulative count of samples the agent dropped for lack of resources.
    pub drops: u32,
    /// Input interface: format 0 = ifIndex, 1 = discarded (value = reason),
    /// 2 = multiple interfaces (value = count); compact samples carry the
    /// format in the top 2 bits.
    pub input: IfRef,
    pub output: IfRef,
    pub num_records: u32,
    records: &'a [u8],
}

/// An interface reference of a flow sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfRef {
    pub format: u32,
    pub value: u32,
}

impl IfRef {
    fn compact(v: u32) -> Self {
        Self {
            format: v >> 30,
            value: v & 0x3fff_ffff,
        }
    }
}

/// A counter sample; records are read with [`CountersSample::records`].
#[derive(Debug, Clone)]
pub struct CountersSample<'a> {
    pub expanded: bool,
    pub sequence: u32,
    pub source: SourceId,
    pub num_records: u32,
    records: &'a [u8],
}

impl<'a> Sample<'a> {
    fn parse(enterprise: u32, format: u32, data: &'a [u8]) -> Result<Self, DecodeError> {
        let mut x = Xdr::new(data);
        match (enterprise, format) {
            (0, 1) | (0, 3) => {
                let expanded = format == 3;
                let sequence = x.u32("flow sample sequence")?;
                let source = if expanded {
                    SourceId {
                        kind: x.u32("source_id_type")?,
                        index: x.u32("source_id_index")?,
                    }
                } else {
                    let v = x.u32("source_id")?;
                    SourceId {
                        kind: v >> 24,
                        index: v & 0x00ff_ffff,
                    }
                };
                let sampling_rate = x.u32("sampling_rate")?;
                let sample_pool = x.u32("sample_pool")?;
                let drops = x.u32("drops")?;
                let (input, output) = if expanded {
                    let input = IfRef {
                        format: x.u32("input format")?,
                        value: x.u32("input value")?,
                    };
                    (
                        input,
                        IfRef {
                            format: x.u32("output format")?,
                            value: x.u32("output value")?,
                        },
                    )
                } else {
                    (
                        IfRef::compact(x.u32("input")?),
                        IfRef::compact(x.u32("output")?),
                    )
                };
                let num_records = x.u32("flow record count")?;
                Ok(Sample::Flow(FlowSample {
                    expanded,
                    sequence,
                    source,
                    sampling_rate,
                    sample_pool,
                    drops,
                    input,
                    output,
                    num_records,
                    records: &data[x.pos..],
                }))
            }
            (0, 2) | (0, 4) => {
                let expanded = format == 4;
                let sequence = x.u32("counter sample sequence")?;
                let source = if expanded {
                    SourceId {
                        kind: x.u32("source_id_type")?,
                        index: x.u32("source_id_index")?,
                    }
                } else {
                    let v = x.u32("source_id")?;
                    SourceId {
                        kind: v >> 24,
                        index: v & 0x00ff_ffff,
                    }
                };
                let num_records = x.u32("counter record count")?;
                Ok(Sample::Counters(CountersSample {
                    expanded,
                    sequence,
                    source,
                    num_records,
                    records: &data[x.pos..],
                }))
            }
            _ => Ok(Sample::Other {
                enterprise,
                format,
                data,
            }),
        }
    }
}

/// Generic iterator over `num` records framed as (format, opaque).
#[derive(Debug, Clone)]
pub struct Records<'a, T> {
    x: Xdr<'a>,
    left: u32,
    done: bool,
    parse: fn(u32, u32, &'a [u8]) -> Result<T, DecodeError>,
}

impl<'a, T> Iterator for Records<'a, T> {
    type Item = Result<T, DecodeError>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self
            .x
            .u32("record format")
            .and_then(|f| Ok((f, self.x.opaque("record")?)));
        match r {
            Ok((format, body)) => Some((self.parse)(format >> 12, format & 0xfff, body)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Header protocol numbers of the sampled-header record.
pub mod header_protocol {
    pub const ETHERNET: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// One flow record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowRecord<'a> {
    /// Sampled header (0,1).
    RawHeader {
        protocol: u32,
        frame_length: u32,
        stripped: u32,
        header: &'a [u8],
    },
    /// Sampled IPv4 (0,3): addresses and ports of the packet, no header bytes.
    Ipv4 {
        length: u32,
        protocol: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        src_port: u32,
        dst_port: u32,
    },
    /// Sampled IPv6 (0,4).
    Ipv6 {
        length: u32,
        protocol: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_port: u32,
        dst_port: u32,
    },
    /// Extended switch (0,1001).
    ExtendedSwitch {
        src_vlan: u32,
        src_priority: u32,
        dst_vlan: u32,
        dst_priority: u32,
    },
    /// Anything else.
    Other {
        enterprise: u32,
        format: u32,
        data: &'a [u8],
    },
}

impl<'a> FlowSample<'a> {
    /// Iterates the flow records; a malformed record yields its error and the
    /// next record is still read.
    pub fn records(&self) -> Records<'a, FlowRecord<'a>> {
        Records {
            x: Xdr::new(self.records),
            left: self.num_records,
            done: false,
            parse: parse_flow_record,
        }
    }
    /// The input ifIndex, if the input is a single interface.
    pub fn input_ifindex(&self) -> Option<u32> {
        (self.input.format == 0).then_some(self.input.value)
    }
    pub fn output_ifindex(&self) -> Option<u32> {
        (self.output.format == 0).then_some(self.output.value)
    }
}

fn parse_flow_record(
    enterprise: u32,
    format: u32,
    d: &[u8],
) -> Result<FlowRecord<'_>, DecodeError> {
    let mut x = Xdr::new(d);
    match (enterprise, format) {
        (0, 1) => {
            let protocol = x.u32("header protocol")?;
            let frame_length = x.u32("frame_length")?;
            let stripped = x.u32("stripped")?;
            let header = x.opaque("sampled header")?;
            Ok(FlowRecord::RawHeader {
                protocol,
                frame_length,
                stripped,
                header,
            })
        }
        (0, 3) => {
            let length = x.u32("ipv4 length")?;
            let protocol = x.u32("ipv4 protocol")?;
            let s = x.bytes(4, "ipv4 src")?;
            let t = x.bytes(4, "ipv4 dst")?;
            let src_port = x.u32("src_port")?;
            let dst_port = x.u32("dst_port")?;
            Ok(FlowRecord::Ipv4 {
                length,
                protocol,
                src: Ipv4Addr::new(s[0], s[1], s[2], s[3]),
                dst: Ipv4Addr::new(t[0], t[1], t[2], t[3]),
                src_port,
                dst_port,
            })
        }
        (0, 4) => {
            let length = x.u32("ipv6 length")?;
            let protocol = x.u32("ipv6 protocol")?;
            let mut s = [0u8; 16];
            s.copy_from_slice(x.bytes(16, "ipv6 src")?);
            let mut t = [0u8; 16];
            t.copy_from_slice(x.bytes(16, "ipv6 dst")?);
            let src_port = x.u32("src_port")?;
            let dst_port = x.u32("dst_port")?;
            Ok(FlowRecord::Ipv6 {
                length,
                protocol,
                src: s.into(),
                dst: t.into(),
                src_port,
                dst_port,
            })
        }
        (0, 1001) => Ok(FlowRecord::ExtendedSwitch {
            src_vlan: x.u32("src_vlan")?,
            src_priority: x.u32("src_priority")?,
            dst_vlan: x.u32("dst_vlan")?,
            dst_priority: x.u32("dst_priority")?,
        }),
        _ => Ok(FlowRecord::Other {
            enterprise,
            format,
            data: d,
        }),
    }
}

/// Generic interface counters (0,1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfCounters {
    pub if_index: u32,
    pub if_type: u32,
    pub if_speed: u64,
    pub if_direction: u32,
    pub if_status: u32,
    pub in_octets: u64,
    pub in_ucast_pkts: u32,
    pub in_multicast_pkts: u32,
    pub in_broadcast_pkts: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast_pkts: u32,
    pub out_multicast_pkts: u32,
    pub out_broadcast_pkts: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous_mode: u32,
}

/// Ethernet interface counters (0,2), dot3Stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EthCounters {
    pub alignment_errors: u32,
    pub fcs_errors: u32,
    pub single_collision_frames: u32,
    pub multiple_collision_frames: u32,
    pub sqe_test_errors: u32,
    pub deferred_transmissions: u32,
    pub late_collisions: u32,
    pub excessive_collisions: u32,
    pub internal_mac_transmit_errors: u32,
    pub carrier_sense_errors: u32,
    pub frame_too_longs: u32,
    pub internal_mac_receive_errors: u32,
    pub symbol_errors: u32,
}

/// One counter record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CounterRecord<'a> {
    Generic(IfCounters),
    Ethernet(EthCounters),
    Other {
        enterprise: u32,
        format: u32,
        data: &'a [u8],
    },
}

impl<'a> CountersSample<'a> {
    /// Iterates the counter records (same error rules as flow records).
    pub fn records(&self) -> Records<'a, CounterRecord<'a>> {
        Records {
            x: Xdr::new(self.records),
            left: self.num_records,
            done: false,
            parse: parse_counter_record,
        }
    }
}

fn parse_counter_record(
    enterprise: u32,
    format: u32,
    d: &[u8],
) -> Result<CounterRecord<'_>, DecodeError> {
    let mut x = Xdr::new(d);
    match (enterprise, format) {
        (0, 1) => {
            let w = "generic interface counters";
            Ok(CounterRecord::Generic(IfCounters {
                if_index: x.u32(w)?,
                if_type: x.u32(w)?,
                if_speed: x.u64(w)?,
                if_direction: x.u32(w)?,
                if_status: x.u32(w)?,
                in_octets: x.u64(w)?,
                in_ucast_pkts: x.u32(w)?,
                in_multicast_pkts: x.u32(w)?,
                in_broadcast_pkts: x.u32(w)?,
                in_discards: x.u32(w)?,
                in_errors: x.u32(w)?,
                in_unknown_protos: x.u32(w)?,
                out_octets: x.u64(w)?,
                out_ucast_pkts: x.u32(w)?,
                out_multicast_pkts: x.u32(w)?,
                out_broadcast_pkts: x.u32(w)?,
                out_discards: x.u32(w)?,
                out_errors: x.u32(w)?,
                promiscuous_mode: x.u32(w)?,
            }))
        }
        (0, 2) => {
            let w = "ethernet counters";
            Ok(CounterRecord::Ethernet(EthCounters {
                alignment_errors: x.u32(w)?,
                fcs_errors: x.u32(w)?,
                single_collision_frames: x.u32(w)?,
                multiple_collision_frames: x.u32(w)?,
                sqe_test_errors: x.u32(w)?,
                deferred_transmissions: x.u32(w)?,
                late_collisions: x.u32(w)?,
                excessive_collisions: x.u32(w)?,
                internal_mac_transmit_errors: x.u32(w)?,
                carrier_sense_errors: x.u32(w)?,
                frame_too_longs: x.u32(w)?,
                internal_mac_receive_errors: x.u32(w)?,
                symbol_errors: x.u32(w)?,
            }))
        }
        _ => Ok(CounterRecord::Other {
            enterprise,
            format,
            data: d,
        }),
    }
}

#[cfg(test)]
mod tests;
