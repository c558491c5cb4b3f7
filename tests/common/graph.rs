//! Stand-in of Microsoft Graph (filled in with the Graph source).
#![allow(dead_code)]
