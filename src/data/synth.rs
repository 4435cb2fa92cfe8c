//! Seeded synthetic datasets: Gaussian-mixture logistic data (Tandon et al.) and noisy linear regression.
