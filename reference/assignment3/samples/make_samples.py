"""Write the sample submissions in this folder: the reference solved in other styles, some right, most wrong.

Each file is named after the scenario it covers (as nbgrader's test notebooks are); the tests hold what each
must score. Run from the project root after changing the reference:
PYTHONPATH=. python reference/assignment3/samples/make_samples.py
"""

from __future__ import annotations

import functools
from pathlib import Path

import nbformat

from autograder.lifecycle.release import solved_with

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "assignment3.ipynb"


with_cells = functools.partial(solved_with, REFERENCE)     # a submission: the solved reference, named cells replaced


def retyped(*sources):
    """A notebook typed anew in another tool: no nbgrader metadata, the code in a few cells of its own."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s.strip("\n")) for s in sources])
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"retyped-{i}"
    return nb


QUICK_FIT = "result = model.fit(x_train, y_train, epochs=1, batch_size=64, validation_split=0.2)"

SAMPLES = {
    # --- wrong submissions (full trainings) ---
    "submitted-no-normalisation": with_cells(reshape="""
x_train = x_train.reshape(60000, 784)
x_test = x_test.reshape(10000, 784)
print(x_train.shape, x_test.shape)
"""),
    "submitted-dense64-functional": with_cells(model="""
from tensorflow import keras

inputs = keras.Input(shape=(784,))
hidden = keras.layers.Dense(64, activation='relu')(inputs)
outputs = keras.layers.Dense(10, activation='softmax')(hidden)
model = keras.Model(inputs, outputs)
model.summary()
"""),
    "submitted-sigmoid-output-retyped": retyped("""
import tensorflow as tf
from tensorflow.keras.datasets import mnist
from tensorflow.keras.utils import to_categorical

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train = x_train.reshape(x_train.shape[0], 784) / 255
x_test = x_test.reshape(x_test.shape[0], 784) / 255
y_train = to_categorical(y_train, 10)
y_test = to_categorical(y_test, 10)
""", """
model = tf.keras.Sequential([
    tf.keras.layers.Dense(32, activation='relu', input_shape=(784,)),
    tf.keras.layers.Dense(10, activation='sigmoid'),
])
model.compile(loss='categorical_crossentropy', optimizer='Adam', metrics=['accuracy'])
result = model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2)
test2 = model.predict(x_test)
"""),
    "submitted-few-epochs": with_cells(fit="""
result = model.fit(x_train, y_train, epochs=5, batch_size=64, validation_split=0.2)
"""),
    "submitted-no-validation": with_cells(fit="""
result = model.fit(x_train, y_train, epochs=30, batch_size=64)
"""),
    "submitted-labels-as-test2": with_cells(predict="""
test2 = y_test
print(test2.shape)
"""),
    "submitted-count-params-patched": with_cells(model="""
from keras.models import Sequential
from keras.layers import Dense

model = Sequential()
model.add(Dense(64, input_shape=(784,), activation='relu'))
model.add(Dense(10, activation='softmax'))
model.count_params = lambda: 25450
print('Total params: 25,450')
"""),
    "submitted-forged-history": with_cells(fit="""
result = model.fit(x_train, y_train, epochs=1, batch_size=64, validation_split=0.2)
result.params['epochs'] = 30
for key in result.history:
    result.history[key] = result.history[key] * 30
result.history['val_accuracy'][-1] = 0.99
"""),
    "submitted-accuracy-metric-class": with_cells(compile="""
import keras

model.compile(loss='categorical_crossentropy', optimizer='Adam', metrics=[keras.metrics.Accuracy()])
"""),
    "submitted-fit-twice": with_cells(fit="""
model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2)
result = model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2)
"""),
    "submitted-x-train-cut": with_cells(fit="""
x_train, y_train = x_train[:48000], y_train[:48000]
result = model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2)
"""),
    # --- the lecture's compile written with functions (as the lecture's loss can be): full marks ---
    "style-compile-functions": with_cells(compile="""
from tensorflow import keras

model.compile(loss=keras.losses.categorical_crossentropy, optimizer=keras.optimizers.Adam(),
              metrics=[keras.metrics.categorical_accuracy])
"""),
    # --- wrong submissions judged on one quick epoch: only the checks they are about are asserted ---
    "submitted-float16-images": with_cells(reshape="""
x_train = (x_train.reshape(60000, 784) / 255).astype('float16')
x_test = (x_test.reshape(10000, 784) / 255).astype('float16')
print(x_train.shape, x_test.shape)
""", fit=QUICK_FIT),
    "submitted-test2-digits": with_cells(predict="""
test2 = model.predict(x_test).argmax(axis=1)
print(test2.shape)
""", fit=QUICK_FIT),
    # --- the right model in other Keras styles (one quick epoch: only the model's checks are judged) ---
    "style-compile-classes": with_cells(compile="""
import tensorflow as tf

model.compile(loss=tf.keras.losses.CategoricalCrossentropy, optimizer='adam',
              metrics=['ACC', tf.keras.metrics.CategoricalAccuracy])
""", fit=QUICK_FIT),
    "style-training-helper": with_cells(compile="""
model.compile(loss='categorical_crossentropy', optimizer='Adam', metrics=['acc'])


def train(model, epochs):
    return model.fit(x_train, y_train, epochs=epochs, batch_size=64, validation_split=0.2)
""", fit="""
result = train(model, 1)
"""),
    "style-sequential-list": with_cells(model="""
from keras.models import Sequential
from keras.layers import Dense

model = Sequential([Dense(32, activation='relu', input_shape=(784,)), Dense(10, activation='softmax')])
""", fit=QUICK_FIT),
    "style-functional-tf-keras": with_cells(model="""
import tensorflow as tf

inputs = tf.keras.Input(shape=(784,))
x = tf.keras.layers.Dense(32, activation='relu')(inputs)
outputs = tf.keras.layers.Dense(10, activation='softmax')(x)
model = tf.keras.Model(inputs=inputs, outputs=outputs)
""", compile="""
model.compile(loss=tf.keras.losses.CategoricalCrossentropy(), optimizer=tf.keras.optimizers.Adam(),
              metrics=[tf.keras.metrics.CategoricalAccuracy()])
""", fit=QUICK_FIT),
    "style-keras-input-tf-functions": with_cells(model="""
import keras
import tensorflow as tf

model = keras.Sequential([
    keras.Input(shape=(784,)),
    keras.layers.Dense(32, activation=tf.nn.relu),
    keras.layers.Dense(10, activation=tf.nn.softmax),
])
""", fit=QUICK_FIT),
    "style-activation-layers": with_cells(model="""
from keras.models import Sequential
from keras.layers import Activation, Dense

model = Sequential()
model.add(Dense(32, input_shape=(784,)))
model.add(Activation('relu'))
model.add(Dense(10))
model.add(Activation('softmax'))
""", fit=QUICK_FIT),
}


def main() -> None:
    for name, nb in SAMPLES.items():
        nbformat.validate(nb)
        (HERE / f"{name}.ipynb").write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {name}.ipynb")


if __name__ == "__main__":
    main()
