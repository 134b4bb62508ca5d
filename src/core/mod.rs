//! The pure core: everything Karo decides, with no API client and no async
//! runtime. A reaction is compiled once per generation (`reaction`: matchers
//! from `matching`, templates from `render`); a notification becomes a [`plan`]:
//! for every alert and reaction, whether it matched, why not, and the Job each
//! action would create (`jobs`). The daemon executes plans; `karo render`
//! prints them.

pub mod closing;
pub mod jobs;
pub mod matching;
pub mod plan;
pub mod reaction;
pub mod render;
pub mod run;
pub mod snapshot;
