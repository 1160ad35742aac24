//! Units and exact rounding live in `weather_common::units`: the aggregates topic and the
//! report write numbers exactly as the consumer's files do.

pub use weather_common::units::*;
