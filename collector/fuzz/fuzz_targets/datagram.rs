//! Any bytes as an sFlow datagram: decode every sample and record, and run
//! the accounting (which also decodes sampled headers). Must never panic,
//! and every flow sample must land in exactly one outcome.
#![no_main]

use std::sync::{Arc, OnceLock};

use collector::{
    accounting::Shard,
    sflow::{self, Sample},
    subnets::SubnetTable,
};
use libfuzzer_sys::fuzz_target;

fn table() -> Arc<SubnetTable> {
    static T: OnceLock<Arc<SubnetTable>> = OnceLock::new();
    T.get_or_init(|| {
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.0.2.0/24",
            "2001:db8::/32",
            "0.0.0.0/0",
        ];
        Arc::new(SubnetTable::new(nets.iter().map(|n| n.parse().expect("prefix"))).expect("table"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = sflow::decode(data) {
        for s in d.samples() {
            match s {
                Ok(Sample::Flow(f)) => f.records().for_each(drop),
                Ok(Sample::Counters(c)) => c.records().for_each(drop),
                _ => {}
            }
        }
    }
    let mut shard = Shard::new(table());
    shard.datagram("192.0.2.1".parse().expect("ip"), data, 0);
    let s = &shard.stats;
    assert_eq!(
        s.flow_samples,
        s.flow_samples_attributed
            + s.flow_samples_unattributed
            + s.flow_samples_no_ip
            + s.flow_samples_zero_rate
    );
    let _ = shard.drain();
});
