//! The `sink` gateway: every message becomes one JSON line in `gateway.outbox`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Gateway, GatewayError, OutboundSms};

pub struct SinkGateway {
    outbox: Mutex<BufWriter<File>>,
}

impl SinkGateway {
    pub fn open(path: &Path) -> std::io::Result<SinkGateway> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(SinkGateway { outbox: Mutex::new(BufWriter::new(file)) })
    }
}

#[async_trait]
impl Gateway for SinkGateway {
    async fn send_batch(&self, messages: &[OutboundSms<'_>]) -> Vec<Result<String, GatewayError>> {
        let mut outbox = self.outbox.lock().await;
        let written = messages
            .iter()
            .try_for_each(|m| {
                serde_json::to_writer(&mut *outbox, m)?;
                outbox.write_all(b"\n")
            })
            // A message counts as accepted only once it is in the file, not in a buffer.
            .and_then(|()| outbox.flush())
            .and_then(|()| outbox.get_ref().sync_data());
        match written {
            Ok(()) => messages.iter().map(|m| Ok(format!("sink-{}", m.id))).collect(),
            Err(e) => messages
                .iter()
                .map(|_| Err(GatewayError::Outbox(std::io::Error::new(e.kind(), e.to_string()))))
                .collect(),
        }
    }
}
