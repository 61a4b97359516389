//! Shamir secret sharing over GF(2^8), in the share layout sops uses for key
//! groups: each share is the y-bytes followed by one x-coordinate byte.
//! Only combining is needed: vars reads key-group files, it does not write them.

/// Multiplication in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        let carry = a & 0x80;
        a <<= 1;
        if carry != 0 {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    product
}

/// The multiplicative inverse (a^254); `inv(0)` is 0 and never used.
fn inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exp = 254u8;
    while exp != 0 {
        if exp & 1 != 0 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exp >>= 1;
    }
    result
}

/// Recovers the secret from at least `threshold` shares.
pub fn combine(shares: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let first = shares.first().ok_or("no shares")?;
    if first.len() < 2 {
        return Err("share too short".into());
    }
    if shares.iter().any(|s| s.len() != first.len()) {
        return Err("shares differ in length".into());
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[s.len() - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err("duplicate share".into());
        }
    }
    let len = first.len() - 1;
    let mut secret = vec![0u8; len];
    for (byte, out) in secret.iter_mut().enumerate() {
        // Lagrange interpolation at x = 0; subtraction is XOR in GF(2^8).
        let mut acc = 0u8;
        for (i, share) in shares.iter().enumerate() {
            let mut basis = 1u8;
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    basis = mul(basis, mul(*xj, inv(xs[i] ^ xj)));
                }
            }
            acc ^= mul(share[byte], basis);
        }
        *out = acc;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits with a fixed polynomial, to test `combine` against an independent evaluation.
    fn split(secret: &[u8], coeffs: &[u8], xs: &[u8]) -> Vec<Vec<u8>> {
        xs.iter()
            .map(|&x| {
                let mut share: Vec<u8> = secret
                    .iter()
                    .map(|&s| {
                        // s + c1 x + c2 x^2 …, Horner from the top
                        let mut y = 0u8;
                        for &c in coeffs.iter().rev() {
                            y = mul(y, x) ^ c;
                        }
                        mul(y, x) ^ s
                    })
                    .collect();
                share.push(x);
                share
            })
            .collect()
    }

    #[test]
    fn two_of_three_any_pair_recovers() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let shares = split(&secret, &[0x53], &[1, 2, 3]);
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let picked: Vec<Vec<u8>> = pair.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(combine(&picked).unwrap(), secret);
        }
        assert_ne!(combine(&shares[..1]).unwrap(), secret);
    }

    #[test]
    fn field_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1);
        }
    }
}
