//! The record writer: `missed` / `skipped_overlap` records written on a
//! thread of their own, so a burst of them never delays a fire.

use super::*;

pub(super) enum WriterMsg {
    Write(Box<Record>, Option<Arc<Ticket>>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Writes missed / overlap records on a thread of its own, so a burst of
/// them (after downtime) never delays a fire.
pub(super) struct RecordWriter {
    pub(super) runs_dir: PathBuf,
    pub(super) tx: Option<std::sync::mpsc::Sender<WriterMsg>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

/// Write a record; its ticket part is done only when it is on disk.
pub(super) fn write_logged(runs_dir: &Path, r: &Record, ticket: Option<&Ticket>) {
    match records::write_record(runs_dir, r) {
        Ok(_) => {
            if let Some(t) = ticket {
                t.part_done();
            }
        }
        Err(e) => {
            error!(job = %r.job_id, scheduled_for = %rfc3339(r.scheduled_for), error = %e, "cannot write the {} record", r.status.as_str());
        }
    }
}

impl RecordWriter {
    pub(super) fn start(runs_dir: PathBuf) -> RecordWriter {
        let (tx, rx) = std::sync::mpsc::channel::<WriterMsg>();
        let dir = runs_dir.clone();
        let thread = std::thread::Builder::new()
            .name("lily-records".into())
            .spawn(move || {
                for msg in rx {
                    match msg {
                        WriterMsg::Write(r, ticket) => write_logged(&dir, &r, ticket.as_deref()),
                        WriterMsg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .ok();
        let tx = thread.as_ref().map(|_| tx);
        RecordWriter { runs_dir, tx, thread }
    }

    pub(super) fn write(&self, r: Record, ticket: Option<Arc<Ticket>>) {
        let unsent = match &self.tx {
            Some(tx) => match tx.send(WriterMsg::Write(Box::new(r), ticket)) {
                Ok(()) => None,
                Err(std::sync::mpsc::SendError(WriterMsg::Write(r, ticket))) => Some((*r, ticket)),
                Err(_) => None,
            },
            None => Some((r, ticket)),
        };
        // No writer thread: write in line.
        if let Some((r, ticket)) = unsent {
            write_logged(&self.runs_dir, &r, ticket.as_deref());
        }
    }

    pub(super) fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if let Some(tx) = &self.tx
            && tx.send(WriterMsg::Flush(done)).is_ok()
        {
            let _ = wait.recv();
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
