//! pdADMM: model parallelism without backpropagation (`gradcode admm`, issue 19; GUIDE §8).
//!
//! J. Wang, Z. Chai, Y. Cheng, L. Zhao, "Toward Model Parallelism for Deep Neural Network based
//! on Gradient-free ADMM Framework", ICDM 2020 (pdADMM, its Algorithm 1), and the quantized
//! pdADMM-G-Q of the same group for the exchange of quantized values.
//!
//! **The problem.** An MLP of L layers, z_l = W_l p_l + b_l, q_l = f(z_l) = max(z_l, 0) for
//! l < L, softmax cross-entropy on z_L, with p_1 = X the training rows (here one row per sample;
//! the paper's samples are columns). pdADMM writes it with p_l (layer l's input) and q_l (its
//! output) coupled by p_{l+1} = q_l, relaxes the other constraints into penalties, and keeps
//! duals u_l for the coupling:
//!
//! ```text
//! F   = R(z_L; y) + Σ_{l=1..L} φ_l + Σ_{l=1..L−1} (ν/2)‖q_l − f(z_l)‖²,
//!       φ_l = (ν/2)‖z_l − W_l p_l − b_l‖²,   R(z; y) = Σ_rows [log Σ_c e^{z_c} − z_y]
//! L_ρ = F + Σ_{l=1..L−1} ⟨u_l, p_{l+1} − q_l⟩ + (ρ/2)‖p_{l+1} − q_l‖²
//! ```
//!
//! **One iteration k → k + 1**, every layer in parallel (Algorithm 1; [`layer`]):
//!
//! ```text
//! 1. p_l⁺ = argmin_p U_l(p; τ) = p_l − G/(τ + ρ)                                       (l ≥ 2)
//!      U_l = φ_l(p_l) + ⟨∇φ_l, p − p_l⟩ + (τ/2)‖p − p_l‖² + ⟨u_{l−1}, p − q_{l−1}⟩ + (ρ/2)‖p − q_{l−1}‖²
//!      G = ∇φ_l(p_l) + u_{l−1} + ρ(p_l − q_{l−1}); τ by backtracking: from τ₀, doubled until
//!      φ_l(p⁺) ≤ φ_l(p_l) + ⟨∇φ_l, p⁺ − p_l⟩ + (τ/2)‖p⁺ − p_l‖²
//! 2. W_l⁺ = W_l − ∇_W φ_l / θ, θ by the same backtracking on φ_l in W
//! 3. b_l⁺ = argmin_b φ_l = the row mean of z_l − p_l⁺ W_l⁺ᵀ                       (closed form)
//! 4. z_l⁺ = argmin_z φ_l + (ν/2)‖q_l − f(z)‖² + (ν/2)‖z − z_l‖²                         (l < L)
//!         = per element the better of min((m + z_l)/2, 0) and max((m + z_l + q_l)/3, 0),
//!           m = p_l⁺ W_l⁺ᵀ + b_l⁺                                                 (closed form)
//!    z_L⁺ = argmin_z R(z; y) + (ν/2)‖z − m‖², per row by Newton's method with a line search
//!           (strongly convex; the authors use FISTA)
//! 5. q_l⁺ = argmin_q (ν/2)‖q − f(z_l⁺)‖² + ⟨u_l, p_{l+1}⁺ − q⟩ + (ρ/2)‖p_{l+1}⁺ − q‖²
//!         = (ν f(z_l⁺) + ρ p_{l+1}⁺ + u_l)/(ν + ρ)                         (l < L, closed form)
//! 6. u_l⁺ = u_l + ρ(p_{l+1}⁺ − q_l⁺)                                                    (l < L)
//! ```
//!
//! φ_l is quadratic in p and in W, so the backtracking condition is read off two norms along
//! the step (ν‖ΔWᵀ‖² ≤ τ‖Δ‖² for p, ν‖pΔᵀ‖² ≤ θ‖Δ‖² for W), without a second pass; τ₀ = θ₀ =
//! [`layer::STEP0`], so τ and θ land within a factor 2 of the step's curvature. Steps 1–4
//! (phase A) need only the previous layer's q, u of iteration k; steps 5–6 (phase B) need the
//! next layer's new p. A layer's iteration is: phase A, send p_l⁺ back, receive p_{l+1}⁺, phase
//! B, send q_l⁺, u_l⁺ forward — each layer talks only to its two neighbours.
//!
//! **Initialization** (the authors'): W_l, b_l ~ N(0, 0.1²) seeded by (seed, l); a forward pass
//! z_l = W_l p_l + b_l, q_l = f(z_l), p_{l+1} = q_l (as sent), u_l = 0; z_L = +1 on each row's
//! class and −1 elsewhere.
//!
//! **Quantization** (`--quantize-bits`, [`quant`]): the values crossing a layer boundary (p
//! backwards, q and u forwards) go through a per-message uniform quantizer; the receiver uses
//! the decoded values. It is applied at every boundary, inside a process too, so the trajectory
//! does not depend on how layers are packed into ranks.
//!
//! **Staleness** (`--max-staleness K`, [`worker`]): phase A of iteration k may use q_{l−1},
//! u_{l−1} of iteration k − K or newer, phase B p_{l+1} of iteration k − K or newer (the newest
//! that has arrived); K = 0 is synchronous pdADMM, deterministic, and the MPI job then equals
//! the serial reference ([`serial`]) to the last bit.
//!
//! Modules: [`layer`] (one layer's updates, MPI-free, unit-tested), [`quant`], [`net`] (sizes,
//! placement, initialization, the assembled forward pass), [`group`] (layers in one process),
//! [`report`] (a layer rank's per-iteration report), [`record`] (rank 0's rows, shared by the
//! reference and the coordinator), [`state`] (checkpoints), and the three loops [`serial`],
//! [`worker`] (a layer rank) and [`coordinator`] (rank 0), which talk only through `comm`.
//!
//! Not implemented: activations other than ReLU, losses other than softmax cross-entropy,
//! minibatches (pdADMM is full-batch: one iteration is one epoch), pdADMM-G's graph
//! augmentation, schedules of ρ and ν.

pub mod coordinator;
pub mod group;
pub mod layer;
pub mod net;
pub mod quant;
pub mod record;
pub mod report;
pub mod serial;
pub mod state;
#[cfg(test)]
mod tests;
pub mod worker;

use crate::error::Error;
use crate::train::RunStatus;

pub use group::LayerGroup;
pub use layer::{Layer, Penalties, Terms};
pub use net::Net;
pub use quant::Codec;

/// How a run ended, for the job's entry point.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    /// Layer ranks that were not reconciled at shutdown; the job must abort when non-empty.
    pub unreconciled: Vec<usize>,
    /// The error that stopped the run, if any.
    pub error: Option<Error>,
}
