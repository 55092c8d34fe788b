"""Vision-transformer blocks (arXiv:2010.11929) used by yolov5s-transformer.yaml: C3 whose bottlenecks are replaced
by self-attention over the pixels of the feature map."""

from torch import nn

from models.blocks import C3, YOLOV5_MODULE, Conv, pickled_as


class TransformerLayer(nn.Module):
    """Multi-head self-attention then a two-layer linear block, each with a residual; no LayerNorm (YOLOv5's choice,
    for speed)."""

    def __init__(self, c, num_heads):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x):
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    """(Conv to c2 when c1 != c2), a learned position embedding, then num_layers TransformerLayers over the h*w pixels."""

    def __init__(self, c1, c2, num_heads, num_layers):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)  # learned position embedding
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)  # (h*w, b, c): the sequence-first layout nn.MultiheadAttention expects
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, h, w)


class C3TR(C3):
    """C3 with a 4-head TransformerBlock of n layers in place of its Bottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        hidden = int(c2 * e)
        self.m = TransformerBlock(hidden, hidden, 4, n)


pickled_as(YOLOV5_MODULE, TransformerLayer, TransformerBlock, C3TR)
