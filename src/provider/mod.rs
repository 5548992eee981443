//! Platform clients. Each turns a platform's wire format into our model.
pub mod meeting_body;
pub mod webmeeting;
