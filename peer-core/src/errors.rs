//! Error texts shared by the gossip comm layer, the deliver client and the CLI's gRPC clients.

/// An error with its sources, `a: b: c` (a cause already contained in the text is not repeated).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// grpc-go's `codes.Code.String()`: how Go names a status code (in its error texts and in
/// Fabric's `code` metric label).
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Go's gRPC error text, `rpc error: code = Unavailable desc = …`, with Go's code names.
pub fn rpc_error(status: &tonic::Status) -> String {
    let code = go_code_name(status.code());
    format!("rpc error: code = {code} desc = {}", status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_read_as_go_prints_them() {
        assert_eq!(rpc_error(&tonic::Status::cancelled("gone")), "rpc error: code = Canceled desc = gone");
        assert_eq!(rpc_error(&tonic::Status::unavailable("down")), "rpc error: code = Unavailable desc = down");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("opening the ledger")]
    struct Bare(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("opening the ledger: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn error_chains_add_causes_once() {
        assert_eq!(error_chain(&Bare(std::io::Error::other("disk full"))), "opening the ledger: disk full");
        assert_eq!(error_chain(&Repeats(std::io::Error::other("disk full"))), "opening the ledger: disk full");
    }
}
