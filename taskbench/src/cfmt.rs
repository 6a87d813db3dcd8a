//! C `printf` number formats used by Task Bench's reports.

/// `printf("%e", x)`: six digits after the point and an exponent of at
/// least two digits (`1.234560e+03`, `0.000000e+00`, `inf`, `-nan`).
pub fn c_exp(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    let s = format!("{x:.6e}");
    let (mantissa, exp) = s.split_once('e').expect("`{:e}` output has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// `printf("%f", x)`: six digits after the point.
pub fn c_fixed(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    format!("{x:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_like_printf() {
        assert_eq!(c_exp(1.0), "1.000000e+00");
        assert_eq!(c_exp(0.0), "0.000000e+00");
        assert_eq!(c_exp(21504.0), "2.150400e+04");
        assert_eq!(c_exp(1.5e-7), "1.500000e-07");
        assert_eq!(c_exp(-2.5e123), "-2.500000e+123");
        assert_eq!(c_exp(9.9999996), "1.000000e+01");
        assert_eq!(c_exp(f64::INFINITY), "inf");
        assert_eq!(c_fixed(0.25), "0.250000");
    }
}
