//! Outbox throughput: one message written (committed) and then deleted, as the
//! publisher does for every durable message (submit, then PUBACK). Typical sizes:
//! a 1 KB detections JSON and an 8 KB defect thumbnail, for both durability levels.
//!
//! Run: `cargo bench --bench outbox`. Criterion prints the time per message and the
//! throughput in messages/s (elements/s).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pvtherm::publish::{MessageClass, Outbox, OutboxConfig, Outgoing, Synchronous};
use std::time::Duration;

fn write_delete(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("outbox_write_delete");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let config = OutboxConfig {
            path: dir.path().join(format!("{sync:?}.sqlite")),
            synchronous: sync,
            ..OutboxConfig::default()
        };
        let mut outbox = Outbox::open(&config).expect("open outbox");
        for (name, class, topic, size) in [
            ("1KB_json", MessageClass::Detections, "detections", 1024),
            (
                "8KB_thumbnail",
                MessageClass::DefectThumbnail,
                "defects/thumbnail",
                8 * 1024,
            ),
        ] {
            let message = Outgoing::new(class, topic, vec![b'x'; size]);
            group.bench_function(format!("{name}/{sync:?}"), |b| {
                b.iter(|| {
                    let ids = outbox.push_all([&message]).expect("push");
                    outbox.remove(ids[0]).expect("remove");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, write_delete);
criterion_main!(benches);
