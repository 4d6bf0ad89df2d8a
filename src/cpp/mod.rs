//! The little C++ preprocessing fbuild does itself, without the compiler: a lexer
//! (`lex`), `#define`/`#if` evaluation for a board's macros (`macros`), and `#include`
//! scanning (`includes`), for prototypes, the include scan and time-macro checks.

pub mod includes;
pub mod lex;
pub mod macros;
