//! Cross-request batching of hot statements: many requests, one round trip.
//!
//! On PostgreSQL most of a short statement's cost is fixed: the round trip,
//! the backend's per-statement set-up and, for a write, the commit. A
//! [`Batcher`] lets concurrent requests share it. Each request hands its
//! input to a queue and waits; a worker takes the first waiting input and
//! every other one already queued (up to a maximum), runs them as one
//! statement (inputs as arrays, `unnest … WITH ORDINALITY`), and answers each
//! request from the rows of its own ordinal.
//!
//! Nothing waits for a batch to fill: a worker starts as soon as one input
//! is there, after letting the tasks that are ready to run go first (one
//! yield to the scheduler, no timer), so a lone request costs one queue hop
//! and one yield more than before, and under load the inputs that arrive
//! while the workers are busy form the next batches. A request is answered
//! only after its batch's statement has returned, i.e. after a write has
//! committed; if the statement fails, every request of the batch gets the
//! error.

use std::future::Future;
use std::sync::Arc;

use samtykke_core::store::StoreError;
use tokio::sync::{mpsc, oneshot, Mutex};

type Reply<O> = oneshot::Sender<Result<O, StoreError>>;

/// A queue in front of `workers` tasks that run batches of up to
/// `max_batch` inputs with one function.
pub(crate) struct Batcher<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> std::fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the workers on the current Tokio runtime. `run` must answer
    /// with exactly one output per input, in the inputs' order. The workers
    /// stop when the last handle to the batcher is dropped.
    pub(crate) fn start<F, Fut>(workers: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send,
    {
        let (queue, inbox) = mpsc::channel::<(I, Reply<O>)>(max_batch * workers * 4);
        let inbox = Arc::new(Mutex::new(inbox));
        let run = Arc::new(run);
        for _ in 0..workers {
            let inbox = Arc::clone(&inbox);
            let run = Arc::clone(&run);
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max_batch);
                loop {
                    {
                        // One worker at a time gathers; the others are
                        // running their batches meanwhile.
                        let mut inbox = inbox.lock().await;
                        if inbox.recv_many(&mut batch, max_batch).await == 0 {
                            return;
                        }
                        // Before the batch starts, the tasks that are
                        // ready to run go first (one yield, no timer): the
                        // requests being handled at this moment queue their
                        // inputs too and share this batch's fixed cost
                        // instead of starting another.
                        tokio::task::yield_now().await;
                        while batch.len() < max_batch {
                            match inbox.try_recv() {
                                Ok(input) => batch.push(input),
                                Err(_) => break,
                            }
                        }
                    }
                    let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = batch.drain(..).unzip();
                    answer(replies, run(inputs).await);
                }
            });
        }
        Self { queue }
    }

    /// Runs `input` in the next batch and returns its output.
    pub(crate) async fn run(&self, input: I) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((input, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's batch worker has stopped".into())
}

/// Sends each request its own output, or the batch's error to all.
fn answer<O>(replies: Vec<Reply<O>>, outputs: Result<Vec<O>, StoreError>) {
    match outputs {
        Ok(outputs) if outputs.len() == replies.len() => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                // A request that gave up waiting has dropped its receiver.
                let _ = reply.send(Ok(output));
            }
        }
        Ok(outputs) => {
            let message = format!(
                "a batch of {} answered {} outputs",
                replies.len(),
                outputs.len()
            );
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_input_gets_its_own_output_and_concurrent_inputs_share_batches() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let batcher = Arc::new(Batcher::start(2, 8, move |inputs: Vec<u32>| {
            seen.lock().unwrap().push(inputs.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(inputs.into_iter().map(|i| i * 10).collect())
            }
        }));
        let calls: Vec<_> = (0..100u32)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { (i, batcher.run(i).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, out) = call.await.unwrap();
            assert_eq!(out, i * 10);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| (1..=8).contains(&n)));
        assert!(sizes.len() < 100, "no two inputs shared a batch: {sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_or_miscounted_batch_fails_each_of_its_inputs() {
        let failing = Batcher::start(1, 4, |_: Vec<u32>| async {
            Err::<Vec<u32>, _>(StoreError::Unavailable("boom".into()))
        });
        assert!(
            matches!(failing.run(1).await, Err(StoreError::Unavailable(m)) if m.contains("boom"))
        );
        let short = Batcher::start(1, 4, |_: Vec<u32>| async { Ok(Vec::<u32>::new()) });
        assert!(matches!(
            short.run(1).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
