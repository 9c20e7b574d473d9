"""lossdecay_lib: the library behind the *lossdecay* book.

A fair test of Jiakai Wei (2019), "Forget the Learning Rate, Decay Loss": weight schedules and the one
mechanism that applies them to the loss, the gradients or the learning rate, the deep plain networks,
data, training loops, curvature tools, run records and plots that the book's chapters call.
"""

__version__ = "0.1.0"
