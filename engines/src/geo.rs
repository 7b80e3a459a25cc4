//! Great-circle geometry and the speed-of-light bound.

/// Mean Earth radius (IUGG), km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Kilometres per millisecond of round-trip time: RTT/2 × (2/3 c) ≈ 100 km/ms.
pub const KM_PER_MS_RTT: f64 = 299_792.458 * (2.0 / 3.0) / 2.0 / 1000.0;

/// Half the Earth's circumference: no two places are farther apart.
pub const MAX_DISTANCE_KM: f64 = std::f64::consts::PI * EARTH_RADIUS_KM;

/// Great-circle distance in km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// The point on the unit sphere (x, y, z): Euclidean order of chords is great-circle order.
pub fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (p, l) = (lat.to_radians(), lon.to_radians());
    [p.cos() * l.cos(), p.cos() * l.sin(), p.sin()]
}

/// Squared chord length on the unit sphere for a great-circle distance in km.
pub fn chord2_for_km(km: f64) -> f64 {
    let angle = (km / EARTH_RADIUS_KM).min(std::f64::consts::PI);
    let chord = 2.0 * (angle / 2.0).sin();
    chord * chord
}

/// Great-circle km for a squared chord on the unit sphere.
pub fn km_for_chord2(chord2: f64) -> f64 {
    let chord = chord2.max(0.0).sqrt().min(2.0);
    2.0 * (chord / 2.0).asin() * EARTH_RADIUS_KM
}

/// The radius (km) within which a target answering in `rtt_ms` must be.
pub fn radius_km(rtt_ms: f64) -> f64 {
    rtt_ms.max(0.0) * KM_PER_MS_RTT
}

/// Whether a latitude/longitude pair is on the globe.
pub fn valid_coordinates(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        // Amsterdam – Frankfurt ≈ 365 km.
        let d = distance_km(52.374, 4.8897, 50.1155, 8.6842);
        assert!((d - 365.0).abs() < 5.0, "{d}");
        assert!((KM_PER_MS_RTT - 99.93).abs() < 0.1);
        for km in [0.5, 10.0, 365.0, 5000.0, 19000.0] {
            assert!((km_for_chord2(chord2_for_km(km)) - km).abs() < 1e-6 * km.max(1.0));
        }
    }
}
