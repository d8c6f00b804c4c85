//! The `sink` gateway: every message becomes one JSON line in `gateway.outbox`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Gateway, GatewayError, OutboundSms};
use crate::domain::delivery::Idempotency;

pub struct SinkGateway {
    outbox: Mutex<BufWriter<File>>,
    /// The same file, for syncing it without holding up the writers.
    synced: Arc<File>,
}

impl SinkGateway {
    pub fn open(path: &Path) -> std::io::Result<SinkGateway> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let synced = Arc::new(file.try_clone()?);
        Ok(SinkGateway { outbox: Mutex::new(BufWriter::new(file)), synced })
    }
}

fn outbox_error(error: std::io::Error) -> GatewayError {
    GatewayError::Transient(format!("outbox: {error}"))
}

#[async_trait]
impl Gateway for SinkGateway {
    async fn send(&self, sms: &OutboundSms<'_>) -> Result<String, GatewayError> {
        let mut outbox = self.outbox.lock().await;
        serde_json::to_writer(&mut *outbox, sms).map_err(|e| outbox_error(e.into()))?;
        outbox.write_all(b"\n").map_err(outbox_error)?;
        Ok(format!("sink-{}", sms.id))
    }

    /// A message counts as accepted only once it is in the file, not in a buffer.
    async fn flush(&self) -> Result<(), GatewayError> {
        self.outbox.lock().await.flush().map_err(outbox_error)?;
        // A sync takes milliseconds of waiting on the disk: on a blocking thread, so that it
        // holds up neither the runtime's workers nor the next messages' writes.
        let file = self.synced.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| outbox_error(std::io::Error::other(e)))?
            .map_err(outbox_error)
    }

    /// Each notification is written once per claim; a crash between write and record can
    /// leave a line whose notification is sent again, which the outbox shows by its id.
    fn idempotency(&self) -> Idempotency {
        Idempotency::Honoured
    }

    fn rate_limited(&self) -> bool {
        false
    }
}
