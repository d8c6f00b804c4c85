//! In-process queue for single-machine runs without a broker. Like a broker queue, a
//! delivery stays in flight until acked, and consumers keep waiting while anything is in
//! flight, because an unacked delivery could still come back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Acker, Delivery, Queue, QueueError};

#[derive(Default)]
struct State {
    ready: VecDeque<Vec<String>>,
    in_flight: usize,
    closed: bool,
}

#[derive(Default, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock is never held across a panic")
    }
}

struct MemoryAcker(MemoryQueue);

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.0.lock().in_flight -= 1;
        self.0.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, notification_ids: Vec<String>) -> Result<(), QueueError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            state.ready.push_back(notification_ids);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn next(&self) -> Result<Option<Delivery>, QueueError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register interest before looking, so a change between the look and the wait is not missed.
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(ids) = state.ready.pop_front() {
                    state.in_flight += 1;
                    return Ok(Some(Delivery::new(ids, Box::new(MemoryAcker(self.clone())))));
                }
                if state.closed && state.in_flight == 0 {
                    return Ok(None);
                }
            }
            changed.await;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_consumer_ends_only_after_close_and_the_last_ack() {
        let queue = MemoryQueue::new();
        queue.publish(vec!["a".into()]).await.unwrap();
        queue.publish(vec!["b".into(), "c".into()]).await.unwrap();
        queue.close();
        assert!(queue.publish(vec!["late".into()]).await.is_err());
        let first = queue.next().await.unwrap().unwrap();
        assert_eq!(first.notification_ids, ["a"]);
        let second = queue.next().await.unwrap().unwrap();
        assert_eq!(second.notification_ids, ["b", "c"]);
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await.unwrap().is_none() }
        });
        first.ack().await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "must not end while b,c is unacked");
        second.ack().await.unwrap();
        assert!(waiting.await.unwrap(), "ends once everything is acked");
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_up_for_a_new_message() {
        let queue = MemoryQueue::new();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await.unwrap().map(|d| d.notification_ids) }
        });
        tokio::task::yield_now().await;
        queue.publish(vec!["x".into()]).await.unwrap();
        assert_eq!(consumer.await.unwrap(), Some(vec!["x".to_string()]));
    }
}
