//! The request log behind `GET /_sim/requests`.

use std::collections::VecDeque;

use serde::Serialize;

/// At most this many entries are kept; older ones are dropped (their
/// sequence numbers are not reused).
const CAPACITY: usize = 500_000;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub principal: Option<String>,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    entries: VecDeque<Entry>,
    next_seq: u64,
}

impl RequestLog {
    pub fn push(
        &mut self,
        method: String,
        path: String,
        query: String,
        principal: Option<String>,
        status: u16,
    ) {
        self.next_seq += 1;
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            seq: self.next_seq,
            method,
            path,
            query,
            principal,
            status,
        });
    }

    pub fn since(&self, seq: u64) -> Vec<Entry> {
        let start = self.entries.partition_point(|e| e.seq <= seq);
        self.entries.range(start..).cloned().collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
