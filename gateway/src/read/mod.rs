//! The read path (DESIGN §5): a plan of which nodes are asked for which shards, the
//! scatter of node calls, the exact merge of their answers, and the answer.

pub mod performance;
pub mod plan;
pub mod scatter;
pub mod strip;
