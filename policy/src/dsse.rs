//! DSSE v1 pre-authentication encoding, the pre-image of every signature in the workspace.
//!
//! Each kind of signed object has its own payload type, so a signature over a contract can
//! never be replayed as a signature over a receipt, even when one key signs both.

/// Payload type of a Work Policy Contract inside a signed envelope.
pub const WPC_PAYLOAD_TYPE: &str = "application/vnd.clawproxy.wpc.v1+json";

/// `PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII
/// decimal bytes.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + body.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_dsse_protocol_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
