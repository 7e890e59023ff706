//! The change feed: one dedicated connection per node that LISTENs on `tenken_work` (an
//! acceptance or restart made chunks claimable) and `tenken_swap` (an audit event: an
//! activation, rollback, master change…). NOTIFY is transactional, so a node hears of a
//! change only once it is committed and visible.

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use tenken_model::Payer;
use tenken_store::{Change, ChangeFeed, StoreError};

use crate::{PgOptions, db};

/// Notifications taken in one `wait`, at most (the rest wait for the next call).
const NOTIFICATIONS_PER_WAIT_MAX: usize = 1024;

pub(crate) struct PgFeed {
    client: Client,
    /// This store's origin: notifications it caused itself are skipped.
    origin: String,
}

impl PgFeed {
    pub(crate) fn connect(url: &str, options: &PgOptions, origin: &str) -> Result<PgFeed, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(db)?;
        config.connect_timeout(Duration::from_millis(options.connection_wait_ms_max.max(1)));
        let mut client = config.connect(NoTls).map_err(db)?;
        client.batch_execute("LISTEN tenken_work; LISTEN tenken_swap").map_err(db)?;
        Ok(PgFeed { client, origin: origin.to_owned() })
    }
}

impl ChangeFeed for PgFeed {
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Change>, StoreError> {
        let origin = self.origin.clone();
        let change = |note: &postgres::Notification| -> Option<Change> {
            let (payer, from) = note.payload().split_once(' ').unwrap_or((note.payload(), ""));
            if from == origin {
                return None;
            }
            let payer = payer.parse::<Payer>().ok()?;
            Some(match note.channel() {
                "tenken_work" => Change::Work(payer),
                _ => Change::Swap(payer),
            })
        };
        let mut out = Vec::new();
        let mut n = self.client.notifications();
        let first = n.timeout_iter(timeout).next().map_err(db)?;
        if let Some(first) = first {
            out.extend(change(&first));
            // Then what has arrived already, without waiting again.
            let mut rest = n.iter();
            while out.len() < NOTIFICATIONS_PER_WAIT_MAX
                && let Some(note) = rest.next().map_err(db)?
            {
                if let Some(c) = change(&note)
                    && !out.contains(&c)
                {
                    out.push(c);
                }
            }
        }
        drop(n);
        if self.client.is_closed() {
            return Err(StoreError::Unavailable("the notification connection closed".into()));
        }
        Ok(out)
    }
}
