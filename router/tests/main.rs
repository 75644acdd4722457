//! Properties of the router's pure pipeline, raw bytes in and envelope bytes out, checked on
//! generated inputs. Each topic is a module; `util` builds raw events by hand.

mod arbitrary_input;
mod redaction_properties;
mod util;
