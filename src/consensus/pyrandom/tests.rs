//! Golden vectors of CPython's `random` and `sum()`, and the hanzo scenarios' weights.

use super::*;

// Golden vectors below were produced by CPython 3.11.7, 3.12.7 and 3.14.2 (identical
// for the generator; `sum()` results are noted per flavour).

const SEEDS: [u64; 5] = [0, 1, 42, (1 << 32) + 5, u64::MAX];

/// `[random.Random(s).getrandbits(32) for _ in range(10)]` per seed in `SEEDS`.
const U32S: [[u32; 10]; 5] = [
    [
        3626764237, 1654615998, 3255389356, 3823568514, 1806341205, 173879092, 1112038970,
        4146640122, 2195908194, 2087043557,
    ],
    [
        577090037, 2444712010, 3639700191, 3445702192, 3280387012, 271041745, 1095513148,
        506456969, 2127877499, 3268308804,
    ],
    [
        2746317213, 478163327, 107420369, 3184935163, 1181241943, 1051802512, 958682846, 599310825,
        3163119785, 440213415,
    ],
    [
        675479763, 2085189291, 1213270837, 3822202474, 2596110301, 3587694693, 62377729,
        1524997693, 2696275445, 735810335,
    ],
    [
        93740670, 1068495656, 1452108352, 2657516307, 910393425, 1958779474, 2641946051, 408097150,
        3949527284, 3868957638,
    ],
];

/// `[random.Random(s).random() for _ in range(10)]` per seed in `SEEDS`.
const F64S: [[f64; 10]; 5] = [
    [
        0.8444218515250481,
        0.7579544029403025,
        0.420571580830845,
        0.25891675029296335,
        0.5112747213686085,
        0.4049341374504143,
        0.7837985890347726,
        0.30331272607892745,
        0.4765969541523558,
        0.5833820394550312,
    ],
    [
        0.13436424411240122,
        0.8474337369372327,
        0.763774618976614,
        0.2550690257394217,
        0.49543508709194095,
        0.4494910647887381,
        0.651592972722763,
        0.7887233511355132,
        0.0938595867742349,
        0.02834747652200631,
    ],
    [
        0.6394267984578837,
        0.025010755222666936,
        0.27502931836911926,
        0.22321073814882275,
        0.7364712141640124,
        0.6766994874229113,
        0.8921795677048454,
        0.08693883262941615,
        0.4219218196852704,
        0.029797219438070344,
    ],
    [
        0.15727238718789782,
        0.2824866316461999,
        0.6044540318498407,
        0.014523449205355199,
        0.6277755437144577,
        0.7776036706010475,
        0.9289472909695745,
        0.6628729848114159,
        0.4957741404348125,
        0.3544373582027327,
    ],
    [
        0.021825695401270107,
        0.3380953268613758,
        0.21196748656082065,
        0.6151259995625727,
        0.9195709817171983,
        0.3710442168116028,
        0.732112450119449,
        0.7425271053191524,
        0.7371253534596319,
        0.7299698407380952,
    ],
];

#[test]
fn getrandbits32_matches_cpython() {
    for (seed, want) in SEEDS.iter().zip(U32S.iter()) {
        let mut r = PyRandom::new(*seed);
        let got: Vec<u32> = (0..10).map(|_| r.next_u32()).collect();
        assert_eq!(got, want, "seed {seed}");
    }
}

#[test]
fn random_matches_cpython_bit_for_bit() {
    for (seed, want) in SEEDS.iter().zip(F64S.iter()) {
        let mut r = PyRandom::new(*seed);
        for (i, w) in want.iter().enumerate() {
            let got = r.random();
            assert_eq!(
                got.to_bits(),
                w.to_bits(),
                "seed {seed} draw {i}: {got} != {w}"
            );
        }
    }
}

#[test]
fn words_and_floats_share_one_stream() {
    // r = random.Random(7): 3 x getrandbits(32), 3 x random(), 1 x getrandbits(32)
    let mut r = PyRandom::new(7);
    let words: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
    assert_eq!(words, [1390851128, 4071050724, 647892279]);
    let floats: Vec<f64> = (0..3).map(|_| r.random()).collect();
    assert_eq!(
        floats,
        [0.3948234964231735, 0.04828642362681235, 0.8212742919913083]
    );
    assert_eq!(r.next_u32(), 404285457);
}

#[test]
fn stream_survives_many_twists() {
    // Crossing several 624-word blocks must not disturb anything: compare a clone that
    // drew words with one that drew floats (2 words each) at the same position.
    let mut a = PyRandom::new(42);
    let mut b = a.clone();
    for _ in 0..5000 {
        a.next_u32();
        a.next_u32();
        b.random();
    }
    assert_eq!(a.next_u32(), b.next_u32());
}

/// The varied 200-element weight vector used in the Python run:
/// `[((i * 7919) % 1000 + 1) / 1000.0 for i in range(200)]`.
fn weights200() -> Vec<f64> {
    (0..200u32)
        .map(|i| f64::from((i * 7919) % 1000 + 1) / 1000.0)
        .collect()
}

/// Three consecutive `r.choices(range(n), w, k=k)` calls on `r = random.Random(seed)`.
fn three_calls(seed: u64, w: &[f64], ks: [usize; 3]) -> Vec<Vec<usize>> {
    let mut r = PyRandom::new(seed);
    ks.iter().map(|&k| r.choices(w, k)).collect()
}

#[test]
fn choices_uniform() {
    let got = three_calls(0, &[1.0, 1.0, 1.0, 1.0], [3, 1, 5]);
    assert_eq!(got, vec![vec![3, 3, 1], vec![1], vec![2, 1, 3, 1, 1]]);
}

#[test]
fn choices_skewed() {
    let got = three_calls(42, &[0.7, 0.2, 0.05, 0.05], [10, 3, 7]);
    assert_eq!(
        got,
        vec![
            vec![0, 0, 0, 0, 1, 0, 1, 0, 0, 0],
            vec![0, 0, 0],
            vec![0, 0, 0, 0, 0, 1, 0],
        ]
    );
}

#[test]
fn choices_one_tiny_weight() {
    let got = three_calls(u64::MAX, &[1.0, 1e-12, 1.0], [10, 10, 10]);
    assert_eq!(
        got,
        vec![
            vec![0, 0, 0, 2, 2, 0, 2, 2, 2, 2],
            vec![0, 2, 0, 0, 0, 2, 0, 0, 2, 2],
            vec![0, 0, 2, 0, 2, 0, 0, 2, 0, 0],
        ]
    );
}

#[test]
fn choices_single_item_still_consumes() {
    let mut r = PyRandom::new(1);
    assert_eq!(r.choices(&[3.5], 1), vec![0]);
    assert_eq!(r.choices(&[3.5], 4), vec![0; 4]);
    assert_eq!(r.choices(&[3.5], 2), vec![0; 2]);
    // 7 draws took 7 random() values: the 8th is F64S[1][7].
    assert_eq!(r.random().to_bits(), F64S[1][7].to_bits());
}

#[test]
fn choices_two_hundred_varied() {
    let got = three_calls((1 << 32) + 5, &weights200(), [20, 1, 15]);
    assert_eq!(
        got,
        vec![
            vec![
                29, 55, 120, 2, 126, 154, 186, 132, 100, 69, 151, 163, 63, 136, 161, 176, 39, 100,
                79, 163,
            ],
            vec![125],
            vec![
                152, 164, 83, 186, 181, 21, 38, 125, 186, 174, 87, 50, 87, 117, 173,
            ],
        ]
    );
}

#[test]
fn choices_k_zero_consumes_nothing() {
    let got = three_calls(0, &[0.25, 0.5, 0.25], [2, 0, 3]);
    assert_eq!(got, vec![vec![2, 2], vec![], vec![1, 1, 1]]);
    let mut a = PyRandom::new(3);
    assert!(a.choices(&[1.0, 2.0, 3.0], 0).is_empty());
    let mut b = PyRandom::new(3);
    assert_eq!(a.random().to_bits(), b.random().to_bits());
}

#[test]
fn choices_normalized_thirds() {
    // w = [x / sum([1/1.1]*3) for x in [1/1.1]*3], the hanzo weights for 3 x 100 ms.
    let w = normalized_weights(&[1.0 / 1.1; 3]);
    assert_eq!(w, vec![0.33333333333333337; 3]);
    let got = three_calls(0, &w, [3, 3, 3]);
    assert_eq!(got, vec![vec![2, 2, 1], vec![0, 1, 1], vec![2, 0, 1]]);
}

#[test]
#[should_panic(expected = "greater than zero")]
fn choices_zero_total_panics() {
    PyRandom::new(0).choices(&[0.0, 0.0], 1);
}

#[test]
#[should_panic(expected = "finite")]
fn choices_infinite_total_panics() {
    PyRandom::new(0).choices(&[1.0, f64::INFINITY], 1);
}

#[test]
#[should_panic(expected = "empty population")]
fn choices_empty_panics() {
    PyRandom::new(0).choices(&[], 1);
}

/// (input, CPython 3.12+/3.14 `sum`, CPython 3.11 `sum`), all checked against real runs.
fn sum_cases() -> Vec<(Vec<f64>, f64, f64)> {
    vec![
        (vec![0.1; 10], 1.0, 0.9999999999999999),
        (vec![1e100, 1.0, -1e100], 1.0, 0.0),
        (
            vec![1.0, 1e-16, 1e-16, 1e-16, 1e-16],
            1.0000000000000004,
            1.0,
        ),
        (vec![0.1, 0.2, 0.3], 0.6, 0.6000000000000001),
        (vec![3.0, 1e16, -1e16, 1.0], 4.0, 5.0),
        (
            vec![1.0 / 1.1, 1.0 / 1.15, 1.0],
            2.7786561264822134,
            2.7786561264822134,
        ),
        (vec![1.0 / 1.1; 3], 2.727272727272727, 2.727272727272727),
        (
            vec![1.0 / 1.05, 1.0 / 3.0, 1.0 / 21.0, 1.0],
            2.333333333333333,
            2.333333333333333,
        ),
        (
            // camps5 luminances (100, 200, 300, 80, 90 ms)
            vec![
                0.9090909090909091,
                0.8333333333333334,
                0.7692307692307692,
                0.9259259259259258,
                0.9174311926605504,
            ],
            4.355012130241488,
            4.355012130241487,
        ),
        (vec![1e308, 1e308], f64::INFINITY, f64::INFINITY),
        (vec![1e308, 1e308, -1e308], f64::INFINITY, f64::INFINITY),
        (vec![f64::INFINITY, 1.0], f64::INFINITY, f64::INFINITY),
        (vec![-0.0], 0.0, 0.0),
        (vec![-0.0, -0.0], 0.0, 0.0),
        (vec![], 0.0, 0.0),
        (vec![2.5], 2.5, 2.5),
        (weights200(), 99.3, 99.29999999999998),
        (
            (0..1000).map(|i| 1.0 / f64::from(i + 1)).collect(),
            7.485470860550345,
            7.485470860550343,
        ),
    ]
}

#[test]
fn py_sum_matches_cpython_312_and_311() {
    for (v, compensated, plain) in sum_cases() {
        let got = py_sum(&v);
        assert_eq!(
            got.to_bits(),
            compensated.to_bits(),
            "3.12+ sum {v:?}: {got}"
        );
        let got = py_sum_with(&v, PySum::Plain);
        assert_eq!(got.to_bits(), plain.to_bits(), "3.11 sum {v:?}: {got}");
    }
    assert!(py_sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
}

#[test]
fn normalized_weights_camps5_by_flavour() {
    let lums = [
        1.0 / (1.0 + 100.0 / 1000.0),
        1.0 / (1.0 + 200.0 / 1000.0),
        1.0 / (1.0 + 300.0 / 1000.0),
        1.0 / (1.0 + 80.0 / 1000.0),
        1.0 / (1.0 + 90.0 / 1000.0),
    ];
    assert_eq!(
        normalized_weights(&lums),
        [
            0.20874589597078788,
            0.19135040463988892,
            0.17663114274451283,
            0.21261156071098766,
            0.21066099593382265,
        ]
    );
    assert_eq!(
        normalized_weights_with(&lums, PySum::Plain),
        [
            0.20874589597078794,
            0.19135040463988895,
            0.17663114274451286,
            0.2126115607109877,
            0.21066099593382268,
        ]
    );
}

/// Luminance of a participant as hanzo-consensus sets it from its round-0 result.
fn luminance(script: &serde_json::Value, r: usize) -> f64 {
    let calls = script.as_array().expect("script list");
    let e = &calls[r.min(calls.len() - 1)];
    let ok = e["ok"].as_bool().expect("ok");
    let ms = e["ms"].as_f64().expect("ms");
    if ok && ms > 0.0 {
        1.0 / (1.0 + ms / 1000.0)
    } else {
        1.0
    }
}

/// Every `"weights": [...]` list of the reference file in document order, parsed with
/// `str::parse` because serde_json without its `float_roundtrip` feature may read a
/// 17-digit number one ulp off (it does for 0.20874589597078794).
fn textual_weights(text: &str) -> Vec<Vec<f64>> {
    text.match_indices("\"weights\"")
        .map(|(at, key)| {
            let rest = &text[at + key.len()..];
            let open = rest.find('[').expect("weights list");
            assert_eq!(rest[..open].trim(), ":", "unexpected `weights` key");
            let close = rest.find(']').expect("end of weights list");
            rest[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<f64>().expect("weight"))
                .collect()
        })
        .collect()
}

#[test]
fn reproduces_recorded_hanzo_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hanzo-0.1.0-scenarios.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    let scenarios = doc["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty());
    let mut recorded = textual_weights(&text).into_iter();
    let mut differing = Vec::new();
    for sc in scenarios {
        let name = sc["name"].as_str().expect("name");
        let participants: Vec<&str> = sc["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .map(|p| p.as_str().expect("participant name"))
            .collect();
        let lums: Vec<f64> = participants
            .iter()
            .map(|p| luminance(&sc["script"][*p], 0))
            .collect();
        let k = sc["effective_params"]["k_effective"]
            .as_u64()
            .expect("k_effective") as usize;
        let plain = normalized_weights_with(&lums, REFERENCE_SUM);
        let compensated = normalized_weights(&lums);
        let sums_agree = py_sum(&lums) == py_sum_with(&lums, PySum::Plain);
        if !sums_agree {
            differing.push(name);
        }
        let mut rng_plain = PyRandom::new(0);
        let mut rng_comp = PyRandom::new(0);
        let rounds = sc["canonical"]["rounds"].as_array().expect("rounds");
        for (i, round) in rounds.iter().enumerate() {
            let want = recorded.next().expect("a textual weights list per round");
            let parsed = round["weights"].as_array().expect("weights");
            assert_eq!(want.len(), parsed.len(), "{name} round {i} weights pairing");
            let bits = |v: &[f64]| v.iter().map(|w| w.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&plain), bits(&want), "{name} round {i} weights");
            if sums_agree {
                assert_eq!(bits(&compensated), bits(&want), "{name} round {i} weights");
            } else {
                for (c, w) in compensated.iter().zip(&want) {
                    let ulps = c.to_bits().abs_diff(w.to_bits());
                    assert!(ulps <= 4, "{name} round {i}: {c} vs {w}");
                }
            }
            let sampled: Vec<&str> = round["sampled"]
                .as_array()
                .expect("sampled")
                .iter()
                .map(|s| s.as_str().expect("sampled name"))
                .collect();
            for (rng, w) in [(&mut rng_plain, &plain), (&mut rng_comp, &compensated)] {
                let drawn: Vec<&str> = rng
                    .choices(w, k)
                    .into_iter()
                    .map(|j| participants[j])
                    .collect();
                assert_eq!(drawn, sampled, "{name} round {i} sample");
            }
        }
    }
    assert!(recorded.next().is_none(), "more weights lists than rounds");
    // The reference was recorded with a pre-3.12 `sum()`: these are the scenarios where
    // that shows in the weights (by a few ulps); the draws are the same either way.
    assert_eq!(differing, ["camps5_k3", "camps5_k4", "camps5_k1"]);
}
