//! The machine's own limits, measured with no application logic, for `scripts/bench.sh` to
//! put billpush's figures beside:
//! - `broker`: persistent messages of billpush's size into a quorum queue with pipelined
//!   publisher confirms, then consumed with one ack per message and with `multiple` acks;
//! - `gateway`: the mock gateway driven by a minimal keep-alive HTTP client.
//!
//! Each prints one JSON object.

use std::time::Instant;

use clap::{Parser, Subcommand};
use futures_util::{stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Broker {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Notification ids per message, as billpush batches them.
        #[arg(long, default_value_t = 100)]
        ids: usize,
    },
    Gateway {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "mock-token")]
        token: String,
        #[arg(long, default_value_t = 50_000)]
        requests: usize,
        /// Requests in flight, as billpush's two workers keep them.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Broker { url, messages, ids } => broker(&url, messages, ids).await,
        Command::Gateway { url, token, requests, concurrency } => gateway(&url, &token, requests, concurrency).await,
    }
}

async fn broker(url: &str, messages: usize, ids: usize) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = format!("raw-limits-{}", std::process::id());
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.as_str().into(), durable, arguments).await?;
    let ids: Vec<String> = (0..ids).map(|i| format!("01a21e1a-4add-74cf-bf6a-{i:012}")).collect();
    let payload = serde_json::to_vec(&serde_json::json!({ "notification_ids": ids }))?;
    let properties = BasicProperties::default().with_delivery_mode(2);

    let publish = |count: usize| {
        let (channel, queue, payload, properties) = (&channel, &queue, &payload, &properties);
        async move {
            // Windows of 500 in flight, then their confirms, as billpush publishes.
            for window in (0..count).collect::<Vec<_>>().chunks(500) {
                let mut confirms = Vec::with_capacity(window.len());
                for _ in window {
                    confirms.push(
                        channel
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                BasicPublishOptions::default(),
                                payload,
                                properties.clone(),
                            )
                            .await?,
                    );
                }
                for confirm in confirms {
                    anyhow::ensure!(confirm.await?.is_ack(), "broker refused a message");
                }
            }
            anyhow::Ok(())
        }
    };
    let started = Instant::now();
    publish(messages).await?;
    let publish_per_s = messages as f64 / started.elapsed().as_secs_f64();

    let consume = |ack_every: usize| {
        let (connection, queue) = (&connection, &queue);
        async move {
            let channel = connection.create_channel().await?;
            channel.basic_qos(200, BasicQosOptions::default()).await?;
            let mut consumer = channel
                .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            let started = Instant::now();
            for n in 1..=messages {
                let delivery = consumer.next().await.expect("consumer open")?;
                if n % ack_every == 0 || n == messages {
                    delivery.acker.ack(BasicAckOptions { multiple: ack_every > 1 }).await?;
                }
            }
            let per_s = messages as f64 / started.elapsed().as_secs_f64();
            channel.close(200, "done".into()).await?;
            anyhow::Ok(per_s)
        }
    };
    let consume_per_s = consume(1).await?;
    publish(messages).await?;
    let consume_multiple_per_s = consume(100).await?;
    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
    connection.close(200, "done".into()).await?;
    println!(
        "{}",
        serde_json::json!({
            "messages": messages,
            "payload_bytes": payload.len(),
            "publish_per_s": publish_per_s.round(),
            "consume_ack_each_per_s": consume_per_s.round(),
            "consume_ack_multiple_100_per_s": consume_multiple_per_s.round(),
        })
    );
    Ok(())
}

async fn gateway(url: &str, token: &str, requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let endpoint = format!("{url}/messages");
    let started = Instant::now();
    let failures = stream::iter(0..requests)
        .map(|n| {
            let request = client.post(&endpoint).bearer_auth(token).header("Idempotency-Key", format!("raw-{n}")).json(
                &serde_json::json!({
                    "id": format!("raw-{n}"),
                    "to": format!("+86139{n:08}"),
                    "from": "10001",
                    "text": "【示例电信】您2026年10月账单合计58.00元：套餐费58.00元。详询10000。",
                    "encoding": "ucs2",
                    "segments": 1,
                }),
            );
            async move { request.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    let per_s = requests as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "{failures} requests failed");
    println!("{}", serde_json::json!({ "requests": requests, "requests_per_s": per_s.round() }));
    Ok(())
}
