"""EHR time-series encoders: a padded batch of hourly feature rows -> one embedding per stay.

A registry (not a single class) so a GRU or transformer encoder is one more decorated
class; `models.build` picks one by `model.ehr.name`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.registry import Registry

EHR_ENCODERS: Registry[nn.Module] = Registry("EHR encoder")
register_ehr_encoder = EHR_ENCODERS.register


def list_ehr_encoders(pattern: str = "*") -> list[str]:
    return EHR_ENCODERS.names(pattern)


@register_ehr_encoder("lstm")
class LSTMEncoder(nn.Module):
    """MedFuse's EHR encoder: stacked LSTM, the last layer's final hidden state, dropout.

    The embedding is the top layer's output at each stay's last true hour. The recurrence is
    causal, so the zero padding after that hour never reaches it: the embedding of a stay
    does not depend on the batch it lands in (tests/test_models.py checks this), exactly as
    with a packed sequence. We run the padded batch rather than a PackedSequence because
    torch's CPU LSTM backward over a packed batch slices the input once per time step and
    zero-fills a full-size gradient for every slice: quadratic in the sequence length, 76%
    of a phenotyping step over whole stays (bench/RESULTS.md, "Phenotyping profile").
    Dropout applies to the final hidden state only, as in MedFuse (Hayat et al., 2022).
    """

    def __init__(self, input_size: int = 76, hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.feat_dim = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MedFuse's initialization: xavier input weights, orthogonal recurrent weights, zero biases."""
        for name, weight in self.lstm.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(weight)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(weight)
            elif name.startswith("bias"):
                nn.init.zeros_(weight)

    def forward(self, ehr: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`ehr` [B, T, F] zero-padded, `lengths` [B] true lengths -> [B, hidden_size]."""
        lengths = lengths.detach().to("cpu", torch.int64).clamp(min=1, max=ehr.shape[1])
        outputs, _ = self.lstm(ehr[:, : int(lengths.max())])  # [B, T_max, hidden]
        last_hour = (lengths - 1).to(outputs.device)
        final_hidden = outputs[torch.arange(outputs.shape[0], device=outputs.device), last_hour]
        return self.dropout(final_hidden)
